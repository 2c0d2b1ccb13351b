#!/usr/bin/env python3
"""Generates data/roster.json, the project's own invented hero roster (Super Hero API format).

Deterministic (fixed seed). Names are combinations of invented words; a few stats are "null" or
"0" on purpose so that build-db's cleaning rule is exercised by the built-in roster.
Run: python3 tools/gen_roster.py > data/roster.json
"""
import json
import random

rng = random.Random(20261126)
TITLES = ["Captain", "Doctor", "Professor", "Lady", "Sir", "Agent", "Madame", "Major",
          "Little", "Grand", "Mister", "Sister", "Baron", "Countess", "Ranger", "Marshal"]
NOUNS = ["Quasar", "Marmot", "Basalt", "Nimbus", "Cobalt", "Lantern", "Kestrel", "Tundra",
         "Mistral", "Pylon", "Gazelle", "Ember", "Comet", "Walrus", "Cinder", "Halcyon",
         "Vortex", "Juniper", "Obsidian", "Thistle", "Monsoon", "Zephyr", "Granite", "Lynx",
         "Sprocket", "Meridian", "Tangent", "Kelp", "Glacier", "Bramble", "Fennec", "Prism"]
PLACES = ["Port Averly", "New Callow", "Drumlin Bay", "Saltmarsh City", "Ostrava Heights",
          "the Lunar Annex", "Veridian Flats", "Kettleburg"]
ALIGN = ["good", "good", "good", "bad", "neutral"]


def stat(rng):
    roll = rng.random()
    if roll < 0.04:
        return "null"
    if roll < 0.06:
        return "0"
    return str(rng.randint(5, 100))


names = set()
heroes = []
while len(heroes) < 120:
    name = f"{rng.choice(TITLES)} {rng.choice(NOUNS)}"
    if name in names:
        continue
    names.add(name)
    hid = str(len(heroes) + 1)
    heroes.append({
        "response": "success",
        "id": hid,
        "name": name,
        "powerstats": {k: stat(rng) for k in
                       ["intelligence", "strength", "speed", "durability", "power", "combat"]},
        "biography": {"full-name": name, "place-of-birth": rng.choice(PLACES),
                      "publisher": "superhero roster", "alignment": rng.choice(ALIGN)},
        "appearance": {"gender": rng.choice(["Female", "Male", "-"]),
                       "height": [f"{rng.randint(150, 220)} cm"]},
        "work": {"occupation": "-", "base": rng.choice(PLACES)},
        "connections": {"group-affiliation": "-", "relatives": "-"},
        "image": {"url": ""},
    })
print(json.dumps(heroes, indent=1))
