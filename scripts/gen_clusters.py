#!/usr/bin/env python3
"""Generates examples/data/clusters.json: ~40 realistic clusters of YouTube videos on home
espresso, shaped like the upstream clustering service's output. Deterministic (fixed seed).

    python3 scripts/gen_clusters.py > examples/data/clusters.json
    python3 scripts/gen_clusters.py 2000 > /tmp/clusters-2000.json   # a bigger input
"""
import json
import random
import sys

rng = random.Random(20261124)

FAMILIES = [
    ("I Tried {machine} for {days} Days", ["machine", "days"]),
    ("${price} vs ${price2} Espresso Machine: Can You Taste the Difference?", ["price", "price2"]),
    ("Stop Making These {n} Espresso Mistakes", ["n"]),
    ("The Only {thing} Guide You'll Ever Need", ["thing"]),
    ("Why Your Espresso Tastes {bad} (And How to Fix It)", ["bad"]),
    ("{machine} Review After {months} Months", ["machine", "months"]),
    ("I Made Espresso With a ${price} Setup", ["price"]),
    ("Barista Reacts to {thing} Hacks", ["thing"]),
    ("{n} Things I Wish I Knew Before Buying a {machine}", ["n", "machine"]),
    ("Is the {machine} Worth It in {year}?", ["machine", "year"]),
    ("Latte Art for Beginners: {thing} in {n} Minutes", ["thing", "n"]),
    ("The Truth About {thing}", ["thing"]),
    ("Dialing In {bean} Beans on the {machine}", ["bean", "machine"]),
    ("Home Barista vs Cafe Barista: {thing} Challenge", ["thing"]),
]
FILL = {
    "machine": ["Breville Bambino", "Gaggia Classic", "Rancilio Silvia", "Flair 58", "La Marzocco Micra",
                "De'Longhi Dedica", "Lelit Bianca", "Decent DE1", "Nespresso Vertuo", "Sage Barista Express"],
    "days": ["7", "30", "100", "365"],
    "months": ["3", "6", "12", "18"],
    "price": ["50", "100", "300", "800", "2000", "5000"],
    "price2": ["150", "600", "1500", "3000", "10000"],
    "n": ["3", "5", "7", "10", "12"],
    "thing": ["Grinder", "Milk Steaming", "Puck Prep", "WDT", "Tamping", "Bean Storage", "Water Chemistry",
              "Latte Art", "Single Dosing", "Pressure Profiling"],
    "bad": ["Sour", "Bitter", "Watery", "Burnt", "Flat"],
    "year": ["2025", "2026"],
    "bean": ["Ethiopian", "Colombian", "Kenyan", "Decaf", "Robusta", "Light Roast"],
}
SOURCES = ["r/espresso", "r/Coffee", "r/barista", "channel: James Hoffmann", "channel: Lance Hedrick",
           "channel: Sprometheus", "channel: Morgan Drinks Coffee", "search: espresso beginner",
           "search: best espresso machine", "trending: food & drink", "channel: Hoffmann Shorts",
           "search: latte art"]


def title(template, keys):
    out = template
    for k in keys:
        out = out.replace("{" + k + "}", rng.choice(FILL[k]), 1)
    return out


clusters = []
for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 40):
    template, keys = FAMILIES[i % len(FAMILIES)]
    tier = rng.random()
    avg = round(rng.lognormvariate(0.9 if tier > 0.3 else 0.1, 0.5), 2)
    size = rng.choice([3, 4, 6, 8, 9, 12, 15, 18, 22, 27, 34, 45, 60])
    shown = min(size, rng.choice([5, 8, 10, 12]))
    spread = rng.choice([0.1, 0.25, 0.5, 0.9])
    videos = []
    seen = set()
    for _ in range(shown):
        ratio = max(0.05, rng.gauss(avg, avg * spread))
        name = title(template, keys)
        for _ in range(20):  # a cluster repeats a formula, not a title
            if name not in seen:
                break
            name = title(template, keys)
        if name in seen:
            continue
        seen.add(name)
        videos.append({"title": name, "performance_ratio": round(ratio, 2),
                       "video_id": "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_")
                                           for _ in range(11)),
                       "views": int(rng.lognormvariate(11, 1.2))})
    videos.sort(key=lambda v: -v["performance_ratio"])
    n_sources = rng.choice([1, 1, 2, 3, 4, 5, 6, 7])
    sources = rng.sample(SOURCES, n_sources)
    clusters.append({
        "id": f"espresso-{i:02d}",
        "size": size,
        "avg_performance": avg,
        "thread_sources": sources,
        "is_wide": n_sources >= 4,
        "label": template.split(":")[0].replace("{", "").replace("}", ""),
        "videos": videos,
    })

# Upstream data is not always clean: one cluster arrives with no videos at all.
clusters[37]["videos"] = []
print(json.dumps(clusters, indent=2, ensure_ascii=False))
