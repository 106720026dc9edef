#!/usr/bin/env python3
"""Builds the real-title labelled sets of examples/data/real/ from a public data set: one
cluster per YouTube channel, its trending videos' titles in order of views, and the channel's
title formulas, labelled by hand below as regexes (each label belongs to its channel's
cluster).

Source: "Trending YouTube Video Statistics and Comments" by Mitchell J (datasnaek, Kaggle,
2017), released under CC0 1.0 (public domain): USvideos.csv, US trending videos of
September-October 2017. The copy used is the one in the public GitHub repository
NevenaSoldat/DataMining (file USvideos.csv). Only titles, channel names and view counts are
kept.

    python3 scripts/real_titles.py path/to/USvideos.csv examples/data/real

writes tune-clusters.json / tune-labels.json (12 channels: what the offline finder was
checked on while it was built) and holdout-clusters.json / holdout-labels.json (12 other
channels, never looked at while tuning).
"""
import csv
import json
import os
import re
import statistics
import sys

TUNE = {
    "First We Feast": [
        ("hot-ones", r"While Eating Spicy Wings \| Hot Ones$"),
        ("sean-in-the-wild", r"\| Sean in the Wild$"),
        ("food-skills", r"\| Food Skills$"),
    ],
    "NFL": [("game-highlights", r"^\S+ vs\. \S+ \| NFL Week \d+ Game Highlights$")],
    "Netflix": [
        ("official-trailer", r"\| Official Trailer( \d+)? \[HD\] \| Netflix$"),
        ("season-trailer", r"\| Season \d+ .*Trailer \[HD\] \| Netflix$"),
    ],
    "Refinery29": [
        ("beauty-evolution", r"\| Beauty Evolution \| Refinery29$"),
        ("beauty-with-mi", r"\| Beauty With Mi( \| Refinery29)?$"),
    ],
    "WIRED": [("tech-support", r"Answers .+ Questions From Twitter \| Tech Support \| WIRED$")],
    "Late Night with Seth Meyers": [("closer-look", r": A Closer Look$")],
    "ESPN": [
        ("first-take", r"\| First Take \| ESPN$"),
        ("sportscenter", r"\| SportsCenter \| ESPN$"),
    ],
    "Good Mythical Morning": [("taste-test", r"Taste Test$")],
    "jacksfilms": [("yiay", r"\(YIAY #\d+\)$")],
    "Watch What Happens Live with Andy Cohen": [
        ("plead-the-fifth", r"\| Plead The Fifth \| WWHL$"),
        ("wwhl", r"\| WWHL$"),
    ],
    "Rosanna Pansino": [("nerdy-nummies", r" - NERDY NUMMIES$")],
    "Safiya Nygaard": [
        ("i-did", r"^I (Tried|Dressed|Bought|Wore|Ordered) "),
        ("for-a-week", r"For A Week$"),
    ],
}
HOLDOUT = {
    "SuperCarlinBrothers": [("hp-theory", r"^Harry Potter Theory: ")],
    "Dancing With The Stars": [("dwts-dance", r" - Dancing with the Stars$")],
    "Saturday Night Live": [("snl-suffix", r" - SNL$"), ("snl-host", r"^SNL Host ")],
    "The Scran Line": [("scran-line", r"- The Scran Line$"), ("in-5-minutes", r"IN 5 MINUTES")],
    "Grace Helbig": [("grace-helbig", r" // Grace Helbig$")],
    "BuzzFeedVideo": [("cheap-vs-expensive", r"^\$[\d,]+ .+ Vs\. \$[\d,]+ "),
                      ("try-vlog", r"• The Try Vlog$")],
    "BuzzFeedBlue": [("cheap-vs-expensive-blue", r"^\$[\d,]+ .+ Vs\. \$[\d,]+ ")],
    "The Dodo": [("the-dodo", r"\| The Dodo$")],
    "HellthyJunkFood": [("versus", r" - VERSUS$"), ("diy", r"^DIY ")],
    "Ingrid Nilsen": [("ingrid", r"\| Ingrid Nilsen$")],
    "E! Entertainment": [("kuwtk", r"^KUWTK \| .+ \| E!$")],
    "TODAY": [("megyn-kelly", r"\| Megyn Kelly TODAY$")],
}


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def clusters_of(rows, channels):
    out = []
    for name in channels:
        best = {}
        for r in rows:
            if r["channel_title"] == name:
                title = r["title"].strip()
                best[title] = max(best.get(title, 0), int(r["views"] or 0))
        titles = sorted(best.items(), key=lambda kv: -kv[1])
        median = statistics.median(v for _, v in titles) or 1
        videos = [{"title": t, "performance_ratio": round(v / median, 2)} for t, v in titles]
        category = next(r["category_id"] for r in rows if r["channel_title"] == name)
        out.append({
            "id": slug(name),
            "size": len(videos),
            "avg_performance": round(statistics.mean(v["performance_ratio"] for v in videos), 2),
            "thread_sources": [f"channel: {name}", "trending: US", f"category: {category}"],
            "is_wide": False,
            "videos": videos,
        })
    return out


def main():
    source, out = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8-sig", errors="replace") as f:
        rows = list(csv.DictReader(f))
    os.makedirs(out, exist_ok=True)
    for name, channels in (("tune", TUNE), ("holdout", HOLDOUT)):
        labels = [{"name": label, "regex": regex, "cluster": slug(channel)}
                  for channel, pairs in channels.items() for label, regex in pairs]
        with open(os.path.join(out, f"{name}-clusters.json"), "w") as f:
            json.dump(clusters_of(rows, channels), f, indent=1, ensure_ascii=False)
            f.write("\n")
        with open(os.path.join(out, f"{name}-labels.json"), "w") as f:
            json.dump(labels, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
