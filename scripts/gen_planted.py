#!/usr/bin/env python3
"""Generates the planted labelled sets of examples/data/planted/: clusters of one topic each,
whose titles follow formulas that recur across clusters ("[N] [Topic] Hacks That Actually
Work" in many topics), with a few titles that follow none, and the labels file naming each
formula as a regex over titles. Deterministic (fixed seeds).

    python3 scripts/gen_planted.py examples/data/planted

writes tune-clusters.json / tune-labels.json (64 clusters, 12 formulas: what the offline
finder was tuned on) and holdout-clusters.json / holdout-labels.json (48 clusters of other
topics, 6 of those formulas and 6 others, another seed: never tuned on).

    python3 scripts/gen_planted.py /tmp/planted 2 200

writes seed2-200-clusters.json / seed2-200-labels.json: 200 clusters of either part's topics
following the 12 tune formulas, from seed 2 (the other sets of BENCHMARKS.md).
"""
import json
import os
import random
import sys

TUNE_FORMULAS = [
    ("hacks", "{n} {topic} Hacks That Actually Work", r"^\d+ .+ Hacks That Actually Work"),
    ("overrated", "Why {topic} Is Overrated", r"^Why .+ Is Overrated"),
    ("truth", "The Truth About {topic}", r"^The Truth About .+"),
    ("tried", "I Tried {topic} for {n} Days", r"^I Tried .+ for \d+ Days"),
    ("beginners", "{topic} for Beginners: Everything You Need to Know",
     r".+ for Beginners: Everything You Need to Know"),
    ("mistakes", "Stop Making These {n} {topic} Mistakes", r"^Stop Making These \d+ .+ Mistakes"),
    ("versus", "{topic} vs {other}: Which Is Better?", r"^.+ vs .+: Which Is Better\?"),
    ("spent", "I Spent ${money} on {topic} So You Don't Have To",
     r"^I Spent \$\d+ on .+ So You Don't Have To"),
    ("minutes", "How to Get Better at {topic} in {n} Minutes a Day",
     r"^How to Get Better at .+ in \d+ Minutes a Day"),
    ("tier", "{topic} Tier List ({year} Edition)", r".+ Tier List \(\d+ Edition\)"),
    ("secret", "Nobody Talks About This {topic} Secret", r"^Nobody Talks About This .+ Secret"),
    ("wish", "{n} Things I Wish I Knew Before Starting {topic}",
     r"^\d+ Things I Wish I Knew Before Starting .+"),
]
NEW_FORMULAS = [
    ("quit", "What Happens When You Quit {topic} for {n} Weeks",
     r"^What Happens When You Quit .+ for \d+ Weeks"),
    ("first-year", "Every {topic} Mistake I Made in My First Year",
     r"^Every .+ Mistake I Made in My First Year"),
    ("setup", "The {topic} Setup Nobody Recommends (But Should)",
     r"^The .+ Setup Nobody Recommends \(But Should\)"),
    ("ranking", "Ranking Every {topic} Trend From Worst to Best",
     r"^Ranking Every .+ Trend From Worst to Best"),
    ("budget", "{topic} on a Budget: ${money} Challenge", r".+ on a Budget: \$\d+ Challenge"),
    ("experts", "I Asked {n} Experts About {topic}", r"^I Asked \d+ Experts About .+"),
]
TUNE_TOPICS = [
    "Sourdough", "Electric Cars", "Houseplants", "Chess", "Marathon Training", "Home Espresso",
    "Budget Travel", "Woodworking", "Indoor Climbing", "Meal Prep", "Street Photography",
    "Vinyl Records", "Beekeeping", "Bike Repair", "Kettlebells", "Film Cameras", "Bonsai",
    "Camping Gear", "Retro Gaming", "Mechanical Keyboards", "Sushi", "Cold Plunges", "Van Life",
    "Tiny Houses", "Drone Photography", "Aquariums", "Knitting", "Skateboarding", "Pottery",
    "Guitar Pedals", "Home Gyms", "Minimalism",
]
HOLDOUT_TOPICS = [
    "Investing", "Language Learning", "3D Printing", "Smart Homes", "Board Games",
    "Fermentation", "Calligraphy", "Birdwatching", "Trail Running", "Cast Iron Cooking",
    "Podcasting", "Home Brewing", "Rock Climbing Shoes", "Watch Collecting", "Solar Panels",
    "Urban Gardening", "Stand-Up Comedy", "Fly Fishing", "Baking Bread", "Ultralight Hiking",
    "Digital Art", "Jiu Jitsu", "Road Trips", "Coffee Roasting",
]
OTHERS = ["the Classic Way", "the Cheap Option", "Doing Nothing", "the Pro Setup", "YouTube Advice"]
NOISE = ["Midnight", "Thoughts", "Rainy", "Weekend", "Honest", "Update", "Story", "Quiet",
         "Morning", "Chaos", "Finally", "Again", "Little", "Journey", "Kitchen", "Window",
         "Letters", "Summer", "Road", "Notes", "Friends", "Shelf", "Corner", "Garden"]
SOURCES = ["r/hobbies", "r/DIY", "r/BuyItForLife", "channel: Tested", "search: beginner guide",
           "search: best of", "trending: howto & style", "channel: Everyday Pro", "r/frugal",
           "channel: Weekend Workshop"]


def fill(rng, template, topic):
    out = template.replace("{topic}", topic)
    out = out.replace("{n}", str(rng.choice([3, 5, 7, 9, 10, 12, 15, 21, 30])), 1)
    out = out.replace("{money}", str(rng.choice([50, 100, 300, 500, 1000, 5000])))
    out = out.replace("{year}", str(rng.choice([2024, 2025, 2026])))
    out = out.replace("{other}", rng.choice(OTHERS))
    if rng.random() < 0.1:
        out += f" (Part {rng.choice([1, 2, 3])})"
    return out


def noise(rng, topic):
    words = rng.sample(NOISE, rng.choice([3, 4, 5]))
    if rng.random() < 0.5:
        words.insert(rng.randrange(len(words) + 1), topic)
    return " ".join(words)


def generate(seed, n_clusters, topics, formulas, prefix):
    rng = random.Random(seed)
    clusters = []
    for i in range(n_clusters):
        topic = topics[i % len(topics)]
        chosen = rng.sample(formulas, rng.choice([3, 4, 5]))
        titles = []
        for _, template, _ in chosen:
            for _ in range(rng.choice([1, 2, 2, 3, 4])):
                t = fill(rng, template, topic)
                if t not in titles:
                    titles.append(t)
        for _ in range(rng.choice([1, 2, 3])):
            titles.append(noise(rng, topic))
        avg = round(rng.lognormvariate(1.0, 0.4), 2)
        videos = [{"title": t, "performance_ratio": round(max(0.1, rng.gauss(avg, avg * 0.4)), 2)}
                  for t in titles]
        videos.sort(key=lambda v: -v["performance_ratio"])
        sources = rng.sample(SOURCES, rng.choice([3, 4, 5, 6]))
        clusters.append({
            "id": f"{prefix}-{i:03d}",
            "size": rng.choice([12, 18, 24, 30, 45, 60]),
            "avg_performance": avg,
            "thread_sources": sources,
            "is_wide": len(sources) >= 5,
            "videos": videos,
        })
    labels = [{"name": name, "regex": regex} for name, _, regex in formulas]
    return clusters, labels


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "examples/data/planted"
    os.makedirs(out, exist_ok=True)
    if len(sys.argv) > 3:
        seed, n = int(sys.argv[2]), int(sys.argv[3])
        sets = {f"seed{seed}-{n}": generate(seed, n, TUNE_TOPICS + HOLDOUT_TOPICS, TUNE_FORMULAS, "x")}
    else:
        sets = {
            "tune": generate(20261208, 64, TUNE_TOPICS, TUNE_FORMULAS, "tune"),
            "holdout": generate(7331, 48, HOLDOUT_TOPICS, TUNE_FORMULAS[::2] + NEW_FORMULAS,
                                "holdout"),
        }
    for name, (clusters, labels) in sets.items():
        with open(os.path.join(out, f"{name}-clusters.json"), "w") as f:
            json.dump(clusters, f, indent=1, ensure_ascii=False)
            f.write("\n")
        with open(os.path.join(out, f"{name}-labels.json"), "w") as f:
            json.dump(labels, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
