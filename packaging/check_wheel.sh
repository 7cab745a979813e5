#!/usr/bin/env bash
# Build duetto's sdist and wheel, install the wheel into a fresh virtual environment, and run the
# product from there as a new user would (packaging/product_tests): every file and module in the
# wheel, every command's --help, the real default pair through `ask`, documents, the chat app in
# tmux, a remote target on llama-server, the README's first command in a fresh clone, and
# `pipx install` of the wheel.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python=${PYTHON:-python3}
pytest=${PYTEST:-$root/.venv/bin/pytest}

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

echo "== installing the wheel into a fresh virtual environment"
"$python" -m venv "$work/user-env"
"$work/user-env/bin/pip" install --disable-pip-version-check "$work"/dist/*.whl > "$work/install.log" 2>&1 || {
    cat "$work/install.log"
    exit 1
}

echo "== running the installed product"
cd "$root"
DUETTO_INSTALLED_ENV="$work/user-env" DUETTO_DIST="$work/dist" \
    "$pytest" packaging/product_tests -p no:cacheprovider --basetemp "$work/pytest"
echo "packaging check passed"
