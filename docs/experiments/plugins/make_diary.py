# ruff: noqa: E501 (sentence templates read best whole, one per line)
"""Write an invented diary for the per-user plugin benchmark.

What it is: the work log of a moss-drier on Hask, an invented tidal island, kept by an unnamed
diarist at the drying station of Ummerlow. Each entry has a dated heading in an invented calendar
(six-day weeks, twelve named months, years counted from "the Sluice"), a weather line and a tally
line in one of several fixed formats, then a few sentences of prose and, often, one of the
diarist's sign-offs. The same people (Odrun Fesk the warrender, Mabbery Quist, the Cray twins,
Hesketh Wrenn the cooper...), the same places (the Long Cribs, the east sough, the Gannet-stone),
the same jargon (to tench, to grey, the blench, brackling) and units (hods, grist, pells,
thrums, bells) and the same turns of phrase ("as the salt wills", "which I set down so it is set
down") come back again and again.

Why: a plugin is a small correction trained on one user's own writing. To see whether it learns
that user's voice, the benchmark needs a text in a style the pretrained model cannot already
know (so its perplexity starts several times higher than on ordinary prose) but which has a
consistent voice and vocabulary that can be learnt. Nothing here exists outside this file, so no
pretrained model has seen it. About 175 sentence templates with slots keep the text varied.

Deterministic: a seeded ``random.Random``, stdlib only, no network. The held-out file is the
later part of the same diary (the entries after the training part), never the same entries.

Usage::

    python3 docs/experiments/plugins/make_diary.py OUTDIR

Writes OUTDIR/user-train.txt (about 12,000 Qwen2.5 tokens) and OUTDIR/user-heldout.txt (about
3,000 tokens).
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

SEED = 4117
# Sizes in characters; this text averages about 3.5 characters per Qwen2.5 token.
TRAIN_CHARACTERS = 42_000
HELD_OUT_CHARACTERS = 10_500

WEEKDAYS = ("Moorday", "Tenchday", "Brineday", "Hollowday", "Cribday", "Ommersday")
MONTHS = (
    ("Tharm", 27),
    ("Ebbenmoot", 27),
    ("Greater Cullow", 27),
    ("Lesser Cullow", 27),
    ("Wend", 27),
    ("Saltmonth", 27),
    ("Oorm", 27),
    ("Fessary", 27),
    ("Dwale", 27),
    ("Quilling", 27),
    ("Hobmass", 27),
    ("Yarrowfall", 30),
)
START_YEAR = 212
START_MONTH = 3  # Lesser Cullow
START_DAY = 5

# name, epithet
PEOPLE = (
    ("Odrun Fesk", "the warrender"),
    ("Mabbery Quist", "eldest of the tenchmen"),
    ("Tolliver Sadge", "who keeps the west sough"),
    ("Ysolde Cray", "the elder twin by a thrum"),
    ("Ambry Cray", "the younger twin"),
    ("Hesketh Wrenn", "the cooper"),
    ("Ulla Pim", "who keeps the kettle-house"),
    ("Corvane Dask", "the boatman"),
    ("Nettle Oakes", "the Oakes girl"),
    ("Brisk Amberly", "the tallyman"),
    ("the Widow Tay", "who will not be hurried"),
    ("Jory Fallowmere", "the mainland lad"),
    ("Pellam Hoy", "the brine-reeve from Skarrow"),
)
PLACES = (
    "the Long Cribs",
    "the kettle-house",
    "the Gannet-stone",
    "the east sough",
    "the west sough",
    "Quarrel Bank",
    "the Hask landing",
    "the peat-hags",
    "the bell-post",
    "the Low Wick",
    "Tay's Corner",
    "the brine-pans",
    "the tally-shed",
    "the Drowned Stair",
    "the Sluice",
    "the Short Cribs",
    "Ommer's Knap",
    "the Skarrow path",
)
CRIBS = ("Long Cribs", "Short Cribs", "north cribs", "new cribs", "Knap cribs", "low cribs", "lee cribs")
# good, unit (plural), unit (singular)
GOODS = (
    ("wick-moss", "hods", "hod"),
    ("loom-salt", "grist", "grist"),
    ("peat", "pells", "pell"),
    ("brackling", "skeins", "skein"),
    ("sour-kelp", "creels", "creel"),
)
NUMBER_WORDS = (
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)
BELLS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth")
WINDS = (
    "north-by-sough",
    "dead west",
    "off the Skarrow side",
    "round from the Wick",
    "south and wet",
    "east, the mean quarter",
    "nowhere in particular",
    "backing to the Knap",
    "straight off the pans",
)
WIND_STRENGTHS = (
    "a one-pell blow",
    "a two-pell blow",
    "a three-pell blow",
    "a cribs-down blow",
    "a whisper",
    "a tenching breeze",
    "a hat-taker",
)
BLENCH = (
    "thick till {B} bell",
    "thin and gone by {B} bell",
    "none",
    "lying in the soughs all day",
    "low on the pans, clear above",
    "the yellow kind",
    "in and out like a dog at a door",
)
SKIES = (
    "pewter",
    "high and clean",
    "bruised over Skarrow",
    "low as a kettle-lid",
    "scalded white",
    "full of gannets",
    "rag-grey",
    "the colour of old brine",
)
WATERS = (
    "slack",
    "a full span over the Stair",
    "brown with the peat-run",
    "sulking",
    "lively",
    "up to the second mark",
    "out past the Gannet-stone",
    "hissing on the pans",
)
FOODS = (
    "barley and brackling",
    "eel broth",
    "salt-cake",
    "a mess of cockles",
    "peat-smoked mutton",
    "oat sops",
    "the grey bread",
    "gull eggs",
    "Ulla's kelp dumplings",
    "cold pottage",
)
TOOLS = (
    "the long rake",
    "the tench-fork",
    "the brine-ladle",
    "the bell-rope",
    "the tally-board",
    "the sough-spade",
    "the crib-hook",
    "the small boat",
    "the peat-iron",
    "the drying sheets",
)
FAULTS = (
    "a crib leg gone soft",
    "the east sough choked with brackling",
    "greying on the under-rows",
    "a split in the big brine-pan",
    "the bell-rope frayed through",
    "rats in the tally-shed",
    "the peat-stack leaning",
    "a sheet torn clean across",
    "the kettle-house flue drawing badly",
    "the boat's thole-pin lost",
    "the Stair slick with weed",
)
TALK = (
    "the price of loom-salt at Skarrow",
    "whether the Sluice will hold another winter",
    "the old warrender, Ommer rest him",
    "who took the good rake",
    "the Cray twins' wager",
    "the mainland and its foolishness",
    "the grey year, when half the moss was lost",
    "the brine-reeve's new boots",
    "how many hods make a fair week",
    "the gannets and their manners",
)
MOODS = (
    "sour as kelp",
    "cheerful for once",
    "quiet",
    "short with everyone",
    "full of talk",
    "tired to the bone",
    "in a tenching temper",
    "pleased with herself",
    "pleased with himself",
)
ASIDES = (
    "as the salt wills",
    "by my reckoning",
    "mark it",
    "which is the old way",
    "neither here nor there",
    "as is the way of things on Hask",
    "I will say no more of it",
    "and no wonder",
    "Ommer keep us",
    "as I have said before and will say again",
)
SIGNOFFS = (
    "And so the day went under.",
    "Ommer keep the cribs.",
    "No more to say of that.",
    "I set it down so it is set down.",
    "The salt will have its say.",
    "So ends {D}.",
    "And so to the kettle and to bed.",
    "A fair day for the moss, all told.",
    "Hods up, sheets in, lamp out.",
    "Tomorrow the {GB} again, as the salt wills.",
)

TEMPLATES = (
    # --- the moss and the cribs
    "Tenched the {CRIB} twice before {B} bell, and we lifted {AMTM}, though the under-rows were greying.",
    "{P} and I tenched the whole of the {CRIB} by ourselves, which is no small thing with the blench sitting on us.",
    "The wick-moss is drying slow, slower than it has any right to, {SAY}.",
    "We lifted {AMTM} off the Long Cribs and {AMTM2} off the Short, and {P} said it was a fair lift.",
    "There was greying on {N} cribs, so {P} stripped them back to the lath and we burned the lot at {PL}.",
    "{P} will tench with the fork held short, which is the old way, and will not be told otherwise.",
    "A good drying wind after {B} bell, and the moss went from wet-green to tally-brown in {T}.",
    "Counted the cribs: {D} standing, {N} down, one that nobody will own to.",
    "The moss on the {CRIB} side is coming in thin and wiry, {SAY}, and {P} blames the brine.",
    "I have never seen moss grey so fast as it did this morning; by {B} bell the whole under-row was gone.",
    "{P} turned up a fistful of the black moss and held it under my nose, saying nothing, which is {P_his} way.",
    "Sheets on at {B} bell, sheets off at {B2}, and in between a great deal of looking at the sky.",
    "We are short {N} hods on the week, and {P2} has been told so twice.",
    "Took the drying sheets down to {PL} to be mended, {N} of them, each worse than the last.",
    "{P} says the moss knows when it is being watched, and for once I think {P_he} is right.",
    "The new cribs on {PL} are too close-set; the wind cannot get between them, {SAY}.",
    "Half a crib of moss blew off into the east sough, and {P} went in after it up to the knees.",
    "I tenched alone from {B} bell to {B2}, and thought about nothing, which is the best of tenching.",
    "The moss came off crisp, the good crisp that rings when you drop it in the hod.",
    "{P} swears the moss on the Short Cribs is better than the Long, and {P2} swears the opposite, and both are wrong.",
    "A bad lift: {AMT}, and most of it fit for nothing but the kettle-house fire.",
    "Laid the {GOOD} out on the sheets in rows of {N}, as {P} likes it, though I see no sense in it.",
    # --- the brine and the pans
    "The brine-pans were hissing by {B} bell, and {P} raked off {AMTS} before the blench came back.",
    "Loom-salt is coming up grey again, {SAY}, and the brine-reeve will have words about it.",
    "{P} tasted the brine at the pans and made a face that I will not describe.",
    "There is {FAULT} and nobody has touched it since Moorday.",
    "We drew the pans down a full span and found {N} dead crabs and one of {P_his} boots.",
    "Raked the pans with {TOOL} till my arms sang; {AMTS} for the morning, which is not nothing.",
    "{P} says the salt is sulking because of the wind, and that is as good an account as any.",
    "The big pan has a weep in its north corner, no bigger than a thumbnail, but it will grow.",
    'Pellam Hoy came over from Skarrow to look at the pans and said "hm" {N} times, by my count.',
    "Salt to the tally-shed: {AMTS}, all of it white, and {P} wanted to know why it was not more.",
    # --- the soughs and the water
    "The east sough was choked again, brackling and a drowned gull, and {P} cleared it with {TOOL}.",
    "Water was {WATER} at {B} bell, which nobody expected, least of all {P}.",
    "{P} went down the Drowned Stair to look at the Sluice and came up with {P_his} face longer than before.",
    "The west sough ran brown all morning with the peat-run, {SAY}.",
    "Dug out the east sough a span deeper where it bends by {PL}; {T} of hard labour for a hand's width of water.",
    "Tide came in past the Gannet-stone and lay there sulking till {B} bell.",
    "The tide-bell went slack at {B} bell and {P} rang it by hand till it woke up.",
    "There was a span of water over the Stair, and {P} would not cross until {P2} went first.",
    "{P} says the Sluice groans more this year than last, and I say it groans the same and we listen more.",
    "The soughs are running clean for the first time since {M}, {SAY}.",
    # --- peat and brackling
    "Cut {AMTP} from the hags and stacked it the Hask way, heads to the wind.",
    "The peat-stack at {PL} is leaning like a drunk, and {P} has propped it with {TOOL}, which will not do.",
    "{P} and {P2} went out to the peat-hags and came back with {AMTP} and a quarrel.",
    "Brackling is thick on the Low Wick; {P} brought in {AMTB} and hung it on the bell-post to drip.",
    "The brackling smells worse than usual, which {P} says means rain and I say means brackling.",
    "Spread the brackling on the Short Cribs where the moss was, and the gannets came to look at it.",
    "The peat is wet through to the heart, {SAY}, and will not burn before {M}.",
    "{P} cut peat all afternoon without a word and brought back {AMTP}, every one squared.",
    "Sour-kelp in from the Wick: {AMTK}, and Ulla took the best of it before it reached the tally.",
    # --- weather in prose
    "The blench came down at {B} bell so thick that I could not see the bell-post from the kettle-house door.",
    "Wind {WIND} all day, {WSTR}, and every sheet on the cribs wanting to be a sail.",
    "A pewter sky and a {WSTR}, which is tenching weather and nothing else.",
    "It rained the fine rain that does not fall so much as hang about.",
    "The sky over Skarrow went the colour of a bruise at {B} bell, and we took the sheets in.",
    "Hot, for Hask: the pans steamed and {P} took off {P_his} second jersey.",
    "No wind at all till {B} bell, then {WSTR} from {WIND}, then nothing again, as if it had forgotten.",
    "The blench lifted at {B} bell like a lid off a kettle, and there was the whole of Skarrow, close enough to spit at.",
    "A day of small rain and large opinions.",
    "Hail at {B} bell, no bigger than barley, and gone in {T}.",
    "Gannets low over the pans all morning, which {P} says is a sign and {P2} says is gannets.",
    "The wind has been {WIND} for {N} days now and the whole island is leaning.",
    # --- people
    "{P} was {MOOD} all morning and I kept out of {P_his} road.",
    "{P} came up from {PL} at {B} bell with {AMT} and the news that {P2} had fallen in the sough again.",
    'Odrun Fesk walked the cribs at {B} bell with the tally-board under her arm, and said "fair" twice and "poor" once.',
    "The warrender is {MOOD} today, {SAY}.",
    "Mabbery Quist says he has tenched on Hask for {D} years and never seen {FAULT} like it.",
    "Old Mabbery sat on the Gannet-stone most of the afternoon and told the gulls about {TALK}.",
    "Tolliver Sadge kept the west sough clear all day and wanted it known.",
    "The Cray twins raced each other down the Long Cribs, tenching as they went, and Ysolde won by a crib.",
    "Ysolde Cray and Ambry Cray are not speaking, over {TALK}; it will pass by {DAY}.",
    "Ambry Cray asked me what a grist weighs, and I told him a grist weighs a grist, which is the only true answer.",
    "Hesketh Wrenn mended {N} hods and grumbled over every one of them.",
    "Hesketh says the new hod-staves from Skarrow are green and will warp before {M}, and he is usually right about wood.",
    "Ulla Pim had {FOOD} on the kettle by {B} bell and would let nobody near it till the tally was in.",
    "Ulla says the kettle-house flue is drawing badly and looked at me as if I had done it.",
    "Corvane Dask took the small boat round to the Wick and came back with {AMTB} and a cut hand.",
    "Corvane will not take the boat out past the Gannet-stone when the water is {WATER}, and I do not blame him.",
    "Nettle Oakes followed me round the cribs all morning asking the names of things.",
    "The Oakes girl found {N} gull eggs under the Short Cribs and brought them to Ulla like treasure.",
    "Brisk Amberly came round with the tally-board at {B} bell and found us short, as he always does.",
    "Brisk counted the hods twice and got {D} and then {D2}, and wrote down the lower, {SAY}.",
    "The Widow Tay sat at Tay's Corner with her pipe and watched us work, which she calls helping.",
    "The Widow Tay says she remembers the grey year, and the year before the grey year, and that this is worse.",
    "Jory Fallowmere still calls a hod a basket, and Mabbery still pretends not to understand him.",
    "The mainland lad fell off the Drowned Stair, not far, and came up laughing, which is more than most do.",
    "Jory asked why we tench by bells and not by the clock, and {P} told him the moss cannot read a clock.",
    "Pellam Hoy, the brine-reeve, came over on the morning tide with new boots and old complaints.",
    "{P} and {P2} had words at {PL} over {TALK}, and {P3} stood between them with {TOOL}.",
    "{P} asked after my knee, which was kind, and then asked for the loan of {TOOL}, which was the point.",
    "{P} sang the whole of the tenching song, all {D} verses, and nobody had the heart to stop {P_him}.",
    "{P} brought me {FOOD} at the cribs, cold but welcome.",
    "{P} said a thing about {TALK} at the kettle-house that I will not set down here.",
    "Sat with {P} at {PL} after {B} bell and we agreed on nothing, pleasantly.",
    "{P} is off to Skarrow on the tide tomorrow and has given me {P_his} rake to mind, which is an honour.",
    "{P} is back from Skarrow with a cough and a great deal of news, little of it true.",
    "Nobody has seen {P} since {B} bell; {P2} says {P_he} is at the peat-hags, sulking.",
    "{P} found the lost crib-hook in the east sough, where {P2} swore it could not be.",
    "{P} was {MOOD}, and {P2} was {MOOD2}, and the two of them tenched side by side all afternoon like a pair of kettles.",
    # --- kettle-house, food, evenings
    "Kettled at {B} bell: {FOOD}, and {FOOD2} after, and no complaints that I heard.",
    "{FOOD} again at the kettle-house, {SAY}.",
    "At the kettle-house the talk was all of {TALK}, as it has been all week.",
    "Ulla gave out {FOOD} and Mabbery said it was not as good as his mother's, as he has said every {DAY} for {D} years.",
    "After kettle we sat by the peat-fire and {P} told the story of the grey year again, with a new ending.",
    "There was no {FOOD} left by the time I got in, so I had the grey bread and was glad of it.",
    "We ate on the Gannet-stone in the last of the light, the whole crew, and nobody spoke of moss.",
    "The kettle-house was full and warm and smelled of wet jerseys and {FOOD}.",
    "{P} played the reed-pipe after kettle until {P2} took it away.",
    "Lamp out early; my back is talking to me in the old language.",
    # --- tally and trade
    "The week's tally stands at {D} hods of wick-moss and {D2} grist of loom-salt, which is fair, {SAY}.",
    "Brisk says we are {N} grist behind last {M}, and that Skarrow is ahead of us, which is the part that stings.",
    "Sent {AMT} over to Skarrow with Corvane; he will bring back barley, lamp-oil and gossip.",
    "The Skarrow boat paid {N} pells of barley for every {N2} hods, which is robbery, {SAY}.",
    "Marked the tally-board myself, as Brisk was at the pans: {AMT}, {AMT2}, and a cross for the greyed.",
    "The brine-reeve wants {D} grist by the end of {M}, and wants it white, and wants the moon besides.",
    "Traded {N} skeins of brackling to the Widow Tay for her good knife, and she thinks she has the best of it.",
    "We are ahead on peat and behind on salt, which is the wrong way round for {M}.",
    "Counted the hods in the tally-shed: {D}, and {N} of them with holes a gull could walk through.",
    # --- the Sluice, the island, lore
    "Walked out to the Sluice after kettle; it is still there, {SAY}.",
    "The old warrender used to say that a Hask crib stands on three legs and a prayer, and the prayer is the leg that holds.",
    "{P} says that in the old days they tenched by torchlight in {M}, and I say in the old days they said a great deal.",
    "A gannet sat on the bell-post all afternoon as if it were waiting to be paid.",
    "Found an old tally-stick in the peat at {PL}, notched in a way none of us could read.",
    "The island is very small when the blench is down and very large when the cribs need tenching.",
    "The Gannet-stone has a new crack in it, {SAY}; {P} says it has always had it.",
    "The bell at the bell-post rang by itself at {B} bell, which it does when the wind is {WIND}, and {P} crossed {P_him}self all the same.",
    "It is {N} years since the Sluice was raised, and the Sluice knows it.",
    "Ommer's Knap was white with gulls at {B} bell, and by {B2} bell there was not one.",
    "Corvane says there is a seal at the Low Wick that knows his name; he does not say what name it calls him.",
    "Hask is a hard place for moss and a soft place for talk, {SAY}.",
    # --- the diarist's reflections
    "I am tired, and the moss is not, {SAY}.",
    "There is a particular quiet on the cribs at {B} bell that I would not trade for Skarrow and all its boats.",
    "My hands are brown to the wrist with moss-stain and will be till {M}.",
    "I wrote yesterday that the weather would turn, and it did not; I set that down too.",
    "Nothing went wrong today, which is what I was afraid of.",
    "I have been on Hask {D} {M}s now, and I still cannot tell a good blench from a bad one till it is over.",
    "It is a strange thing to count hods all day and then dream of counting them.",
    "If this book is ever read by anyone, let them know that {P} did the work of two today.",
    "I had meant to mend my boots and instead I mended {TOOL}, which is the Hask way with intentions.",
    "A day like a knot: nothing to show for it but that it held.",
    "Set down for my own keeping: {P} was right about the wind, and I was wrong.",
    "Some days the cribs are work and some days they are only cribs; today they were work.",
    "I think of the mainland sometimes, and then the bell goes, and I stop.",
    "My knee says {WIND} by morning, and my knee is a better warrender than some.",
    # --- mishaps
    "Found {FAULT} at {B} bell, and spent the better part of {T} on it.",
    "{FAULT_CAP} again; {P} and I patched it with {TOOL} and hope.",
    "Lost {TOOL} in the east sough and found it two bells later in the west, which is not possible, {SAY}.",
    "{P} put a foot through a rotten crib-lath and said some of the old words.",
    "The kettle-house roof let in the rain at {B} bell, right over Ulla's pot, and we heard about it.",
    "A gust took {N} sheets off the Long Cribs and laid them over the peat-stack like washing.",
    "The boat came home with a hand's depth of water in her and {P} bailing with {P_his} hat.",
    "Rats in the tally-shed again; {P} set the old traps and caught nothing but {P2}'s thumb.",
    "The bell-rope parted at {B} bell and we worked by guess till {P} spliced it.",
    "Dropped a full hod on the Stair and watched the moss go down to the Sluice, {SAY}.",
    # --- plans and reckonings
    "Tomorrow the {CRIB}, if the blench allows, and the {PL2} if it does not.",
    "The warrender wants the Short Cribs stripped and re-laid before {M}; it will take {N} days if we are lucky and {N2} if we are Hask.",
    "{P} and I have agreed to tench the {CRIB} at first bell tomorrow, before the wind gets up.",
    "By my reckoning we need {D} more hods before the Skarrow boat, and {N} fair days to dry them.",
    "Must ask Hesketh about the hods; must ask Ulla about the flue; must not ask the Widow Tay about anything.",
    "If the wind holds {WIND} we shall have the moss in by {DAY}, {SAY}.",
    "Next {DAY} the brine-reeve comes again, and the pans had better be white.",
    "The plan is to cut peat while the salt sulks, and salt while the peat is wet, and to tench in between.",
    # --- short lines
    "A long day.",
    "Moss, salt, moss.",
    "The blench again.",
    "{AMT}, and glad of it.",
    "{P} {MOOD}; the rest of us likewise.",
    "Nothing to set down but the tally.",
    "Wind {WIND}.",
    "Tenched, kettled, slept.",
    "{P} again, {SAY}.",
    "Good moss.",
    "Bad brine.",
)

HEADINGS = (
    "{WD}, the {ORD} of {MON}, Sluice-year {Y}.",
    "{WD}, the {ORD} of {MON}, Sluice-year {Y}.",
    "- {DN} {MON}, {WD} -",
    "{WD}. {MON}, day {DW}. Year {Y} since the Sluice.",
    "{WD}, {DN} {MON}.",
)
WEATHER_LINES = (
    "Wind: {WIND}, {WSTR}. Blench: {BLENCH}.",
    "Wind {WIND}; sky {SKY}; water {WATER}.",
    "Sky: {SKY}. Water: {WATER}. Blench: {BLENCH}.",
    "Weather: {WSTR} {WIND}, the sky {SKY}, the blench {BLENCH}.",
)
TALLY_LINES = (
    "Tally: {D} hods wick-moss, {d} grist loom-salt, {d2} greyed.",
    "Tally: {D} hods, {d} grist, {D2} pells peat, {d2} greyed.",
    "Cribs tenched: {D} of 40. Hods up: {d}. Greyed: {d2}.",
    "Hods {D}, grist {d}, skeins {d2}. Greyed none, Ommer be thanked.",
    "Tally not taken; Brisk at Skarrow.",
)

ORDINALS = (
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty-first",
    "twenty-second",
    "twenty-third",
    "twenty-fourth",
    "twenty-fifth",
    "twenty-sixth",
    "twenty-seventh",
    "twenty-eighth",
    "twenty-ninth",
    "thirtieth",
)
PRONOUNS_HER = {"Odrun Fesk", "Ysolde Cray", "Ulla Pim", "Nettle Oakes", "the Widow Tay"}


PLAIN_SLOTS = {
    "CRIB": CRIBS, "WIND": WINDS, "WSTR": WIND_STRENGTHS, "SKY": SKIES, "WATER": WATERS,
    "TOOL": TOOLS, "TALK": TALK, "SAY": ASIDES,
}  # fmt: skip
"""Slots filled by one choice from a list. ({DAY} starts with D: a number of days, like {D}.)"""


def suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}" + {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


class Filler:
    """Fills one template's slots; a slot used twice in a template gets the same value."""

    def __init__(self, rng: random.Random, date: dict[str, str]) -> None:
        self.rng = rng
        self.date = date
        self.values: dict[str, str] = {}
        self.people: dict[str, tuple[str, str]] = {}

    def person(self, key: str) -> tuple[str, str]:
        if key not in self.people:
            taken = {p[0] for p in self.people.values()}
            self.people[key] = self.rng.choice([p for p in PEOPLE if p[0] not in taken])
        return self.people[key]

    def amount(self, kind: str) -> str:
        good, units, unit = self.rng.choice([g for g in GOODS if not kind or g[0][0] == kind])
        number = self.rng.choice(("one",) + NUMBER_WORDS)
        return f"{number} {unit if number == 'one' else units} of {good}"

    def slot(self, name: str) -> str:
        rng = self.rng
        if name in self.date:
            return self.date[name]
        if name in self.values:
            return self.values[name]
        match = re.fullmatch(r"(P\d?)(_he|_him|_his)?", name)
        if match:
            who = self.person(match.group(1))[0]
            female = who in PRONOUNS_HER
            value = {
                None: who,
                "_he": "she" if female else "he",
                "_him": "her" if female else "him",
                "_his": "her" if female else "his",
            }[match.group(2)]
            return value
        if name in ("B", "B2"):
            value = rng.choice(BELLS)
        elif name.startswith("N"):
            value = rng.choice(NUMBER_WORDS)
        elif name in ("d", "d2"):
            value = str(rng.randint(0, 9))
        elif name in PLAIN_SLOTS:
            value = rng.choice(PLAIN_SLOTS[name])
        elif name.startswith("D"):
            value = str(rng.randint(3, 46))
        elif name.startswith("AMT"):
            # AMT: any good; AMTM wick-moss, AMTS loom-salt, AMTP peat, AMTB brackling, AMTK sour-kelp
            kind = {"": "", "M": "w", "S": "l", "P": "p", "B": "b", "K": "s"}[name[3:].rstrip("2")]
            value = self.amount(kind)
            while name.endswith("2") and value == self.values.get(name[:-1]):
                value = self.amount(kind)
        elif name in ("PL", "PL2"):
            value = rng.choice(PLACES)
            while name == "PL2" and value == self.values.get("PL"):
                value = rng.choice(PLACES)
        elif name == "GB":
            value = rng.choice(("cribs", "pans", "soughs", "peat-hags", "tally"))
        elif name == "GOOD":
            value = rng.choice(GOODS)[0]
        elif name == "T":
            value = rng.choice(("a thrum", "two thrums", "three thrums", "half a bell", "a bell and more"))
        elif name == "BLENCH":
            value = rng.choice(BLENCH).replace("{B}", rng.choice(BELLS))
        elif name.startswith("FOOD"):
            value = rng.choice(FOODS)
        elif name.startswith("FAULT"):
            value = rng.choice(FAULTS)
            if name == "FAULT_CAP":
                value = value[0].upper() + value[1:]
        elif name.startswith("MOOD"):
            value = rng.choice(MOODS)
        elif name == "M":
            value = rng.choice(MONTHS)[0]
        else:
            raise KeyError(name)
        self.values[name] = value
        return value

    def fill(self, template: str) -> str:
        text = re.sub(r"\{(\w+)\}", lambda m: self.slot(m.group(1)), template)
        return text[0].upper() + text[1:]


def place_fix(template: str) -> str:
    """Templates write "the {PL}" or "{PL}"; the place names carry their own article."""
    return re.sub(r"\bthe \{(PL2?)\}", r"{\1}", template)


def entries(seed: int = SEED):
    """Yield the diary's entries, one after another, as text."""
    rng = random.Random(seed)
    year, month, day, weekday = START_YEAR, START_MONTH, START_DAY, 2
    templates = [place_fix(t) for t in TEMPLATES]
    recent: list[int] = []
    while True:
        name, length = MONTHS[month]
        date = {
            "WD": WEEKDAYS[weekday],
            "ORD": ORDINALS[day - 1],
            "MON": name,
            "Y": str(year),
            "DN": suffix(day),
            "DW": str(day),
        }
        lines = [Filler(rng, date).fill(rng.choice(HEADINGS))]
        if rng.random() < 0.85:
            lines.append(Filler(rng, date).fill(rng.choice(WEATHER_LINES)))
        if rng.random() < 0.7:
            lines.append(Filler(rng, date).fill(rng.choice(TALLY_LINES)))
        sentences = []
        for _ in range(rng.choice((2, 3, 4, 4, 5, 5, 6, 7))):
            index = rng.randrange(len(templates))
            while index in recent:
                index = rng.randrange(len(templates))
            recent = (recent + [index])[-60:]
            sentences.append(Filler(rng, date).fill(templates[index]))
        if rng.random() < 0.6:
            signoff = rng.choice(SIGNOFFS).replace("{D}", date["WD"])
            sentences.append(Filler(rng, date).fill(signoff))
        # one paragraph, or two when the entry is long
        if len(sentences) > 5 and rng.random() < 0.5:
            cut = len(sentences) // 2
            prose = " ".join(sentences[:cut]) + "\n" + " ".join(sentences[cut:])
        else:
            prose = " ".join(sentences)
        lines.append(prose)
        yield "\n".join(lines)
        # a day or, now and then, a few days with nothing written
        for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 4)):
            weekday = (weekday + 1) % len(WEEKDAYS)
            day += 1
            if day > length:
                day, month = 1, month + 1
                if month == len(MONTHS):
                    month, year = 0, year + 1


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().split("\n\n")[-2].strip())
        return 2
    outdir = Path(argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    stream = entries()
    for filename, budget in (("user-train.txt", TRAIN_CHARACTERS), ("user-heldout.txt", HELD_OUT_CHARACTERS)):
        chunk: list[str] = []
        size = 0
        while size < budget:
            entry = next(stream)
            chunk.append(entry)
            size += len(entry) + 2
        (outdir / filename).write_text("\n\n".join(chunk) + "\n", encoding="utf-8")
        print(f"{outdir / filename}: {len(chunk)} entries, {size} characters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
