#!/usr/bin/env bash
# Build duetto's sdist and wheel, install the wheel into a fresh virtual environment and run it
# there as a new user would: proves the package carries everything it needs (the manifest
# included) and installs only the `duetto` import namespace.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python=${PYTHON:-python3}

echo "== building sdist and wheel (the wheel is built from the sdist)"
"$python" -m venv "$work/build-env"
"$work/build-env/bin/pip" install --quiet --disable-pip-version-check build 2> "$work/build-env.log" || {
    cat "$work/build-env.log"
    exit 1
}
"$work/build-env/bin/python" -m build --outdir "$work/dist" "$root" > "$work/build.log" 2>&1 || {
    cat "$work/build.log"
    exit 1
}
ls -l "$work/dist"

echo "== checking the wheel's contents"
"$python" - "$work"/dist/*.whl <<'PY'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
assert top_level == {"duetto"}, f"the wheel must install only the duetto namespace, found {sorted(top_level)}"
assert "duetto/engine/models_manifest.yaml" in names, "the models manifest is missing from the wheel"
assert not any(name.startswith("duetto/tests") for name in names), "tests must not be installed"
print(f"ok: {len(names)} files, all under duetto/")
PY

echo "== installing the wheel into a fresh virtual environment"
"$python" -m venv "$work/user-env"
"$work/user-env/bin/pip" install --disable-pip-version-check "$work"/dist/*.whl > "$work/install.log" 2>&1 || {
    cat "$work/install.log"
    exit 1
}

echo "== running it as a new user"
export DUETTO_HOME="$work/user-home" DUETTO_MODELS="$work/user-models"
cd "$work"
"$work/user-env/bin/duetto" --version
"$work/user-env/bin/duetto" models list
"$work/user-env/bin/duetto" models list --json > "$work/list.json"
"$python" -c "import json, sys; data = json.load(open(sys.argv[1])); assert data['default_profile'] == 'default'" "$work/list.json"
echo "packaging check passed"
