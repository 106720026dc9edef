//! Finding one cluster's title formulas.
//!
//! 1. **Slots first.** Numbers become `[N]`. The cluster's topic becomes `[Topic]`: the words
//!    (not stop words, not numbers) that at least 60% of its titles share, in varied places.
//!    Words with the same word or punctuation just before them in 80% of the titles they are
//!    in, or just after, are not a topic but part of a formula (a channel's `… Eats Spicy
//!    Wings | Hot Ones`, a series' `SNL: …`), and stay literal. Titles of different topics
//!    that follow one formula then read the same.
//! 2. **Skeletons.** For each pair of titles of the request (of one cluster or of two), their
//!    longest common subsequence of words, with `[X]` wherever either has words in between.
//! 3. **Selection.** A skeleton is a candidate when it has a slot, a literal word that is not
//!    a stop word and another word or a mark that structures titles (`[X] | The Dodo` and
//!    `[X] - SNL` pass, `How to [X] a [X]` does not), and its template matches at least two of
//!    the request's titles. Literal words weigh 2,
//!    stop words 1. Each cluster chooses
//!    among the candidates that match its own titles, greedily by
//!    what they explain: each title is worth the literal weight of the most specific template
//!    chosen that matches it, and the next template chosen is the one that adds the most to
//!    that sum, times the titles of the whole request it matches (a template found in several
//!    topics is a formula; one found in one may be the topic, or a variant of the formula). A
//!    template that only refines chosen ones (every title it matches is explained already)
//!    must add a weight of 5 per title: a sub-series (`[X] | Plead The Fifth | WWHL` under
//!    `[X] | WWHL`), not the topic's word or two. A generic template that spans two formulas adds nothing once the two are
//!    chosen, and is not.

use std::collections::{BTreeMap, HashSet};

use super::prompt::Found;
use crate::template::{Template, fold};

/// Share of the titles a word must be in to be part of the topic.
const TOPIC_SHARE: f64 = 0.6;
/// Share of a word's titles with the same thing before it (or after it) that makes it part of a
/// formula rather than of the topic.
const FIXED_SHARE: f64 = 0.8;
/// What a template's literal text must have: a word that is not a stop word, and another word
/// or a mark that structures titles (`|`, `-`, `:`, `#`, `$`, brackets, `/`, `•`). `[X] | The
/// Dodo`, `[X] (YIAY #[N])` and `[X] - SNL` pass; `How to [X] a [X]` and `[X] Review` do not.
fn enough_words(template: &Template) -> bool {
    let content = template
        .literal_word_list()
        .any(|w| !STOP_WORDS.contains(&w));
    let structure = template
        .literal_text()
        .any(|t| t.contains(['|', '-', ':', '#', '(', ')', '/', '•', '–', '—', '$']));
    content && (template.literal_words() >= 2 || structure)
}
/// Least a template must add to what the chosen ones explain (in those weights) to be chosen
/// too.
const MIN_GAIN: usize = 4;
/// Least a template must add per title, on average, when every title it matches is explained
/// already (it refines a chosen template).
const MIN_REFINEMENT: usize = 5;

const TOPIC: &str = "[Topic]";
const NUMBER: &str = "[N]";
const GAP: &str = "[X]";

const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "for", "with", "at", "by",
    "from", "is", "are", "was", "be", "it", "its", "this", "that", "my", "your", "our", "i", "you",
    "we", "he", "she", "they", "me", "how", "why", "what", "who", "when", "not", "no", "do",
    "does", "so", "if", "as", "all", "&", "-", "|", "+",
];

/// A word of a title: its text as written and its key (lower case) for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    text: String,
    key: String,
}

impl Word {
    fn new(text: String) -> Self {
        let key = text.to_lowercase();
        Self { text, key }
    }
}

/// The word without the punctuation around it, lower case.
fn core(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase()
}

/// `word` split around its core: (leading punctuation, trailing punctuation).
fn punctuation(word: &str) -> (&str, &str) {
    let start = word.find(char::is_alphanumeric).unwrap_or(word.len());
    let end = word.rfind(char::is_alphanumeric).map_or(start, |i| {
        i + word[i..].chars().next().map_or(1, char::len_utf8)
    });
    (&word[..start], &word[end.max(start)..])
}

/// A number, as titles write them: `7`, `1,000`, `4.5`, `100k`, `2x`, `1st`, `90s`.
fn is_number(core: &str) -> bool {
    let digits = core
        .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.'))
        .unwrap_or(core.len());
    digits > 0
        && core.starts_with(|c: char| c.is_ascii_digit())
        && matches!(
            &core[digits..],
            "" | "k" | "m" | "b" | "x" | "s" | "th" | "st" | "nd" | "rd"
        )
}

/// `word` with its core replaced by `slot`, its punctuation kept.
fn slotted(word: &str, slot: &str) -> String {
    let (lead, trail) = punctuation(word);
    format!("{lead}{slot}{trail}")
}

/// The words of the topic: in at least [`TOPIC_SHARE`] of the titles (at least 2, of 3 or
/// more titles), not stop words or numbers, and not in a fixed place. A word's place is what
/// stands just before and just after its run of such words (punctuation, a word); when
/// [`FIXED_SHARE`] of its titles have the same thing on one side, the word is part of a
/// formula (`… Eats Spicy Wings | Hot Ones`), not of the topic, which the cluster's formulas
/// put in varied places, and at least two different words or marks must be seen on one side
/// of it. The start and the end of the title are places too (a channel's name ends its
/// titles), but not varied ones. A number is neither a fixed nor a varied place: many formulas
/// put the topic after one, and so do formulas' own words.
fn topic_words(titles: &[Vec<&str>]) -> HashSet<String> {
    let n = titles.len();
    if n < 3 {
        return HashSet::new();
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    #[allow(clippy::cast_sign_loss)]
    let need = ((n as f64 * TOPIC_SHARE).ceil() as usize).max(2);
    let mut titles_with: BTreeMap<String, usize> = BTreeMap::new();
    for words in titles {
        let distinct: HashSet<String> = words.iter().map(|w| core(w)).collect();
        for key in distinct {
            if !key.is_empty() && !is_number(&key) && !STOP_WORDS.contains(&key.as_str()) {
                *titles_with.entry(key).or_default() += 1;
            }
        }
    }
    let frequent: HashSet<String> = titles_with
        .into_iter()
        .filter(|&(_, count)| count >= need)
        .map(|(key, _)| key)
        .collect();
    // Per frequent word: what stands before and after its run, once per title.
    let mut sides: BTreeMap<&str, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (t, words) in titles.iter().enumerate() {
        let keys: Vec<String> = words.iter().map(|w| core(w)).collect();
        // A number is no fixed place: each counts apart (many formulas put a topic after one).
        let apart = |what: &str| format!("{what}#{t}");
        let context = |i: usize| {
            let key = &keys[i];
            if is_number(key) {
                apart(NUMBER)
            } else if key.is_empty() {
                words[i].to_owned()
            } else {
                key.clone()
            }
        };
        let mut seen: HashSet<&str> = HashSet::new();
        let mut i = 0;
        while i < keys.len() {
            if !frequent.contains(&keys[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < keys.len() && frequent.contains(&keys[i]) {
                i += 1;
            }
            let (lead, _) = punctuation(words[start]);
            let (_, trail) = punctuation(words[i - 1]);
            let before = if !lead.is_empty() {
                lead.to_owned()
            } else if start == 0 {
                "^".to_owned()
            } else {
                context(start - 1)
            };
            let after = if !trail.is_empty() {
                trail.to_owned()
            } else if i == keys.len() {
                "$".to_owned()
            } else {
                context(i)
            };
            for key in &keys[start..i] {
                if let Some(key) = frequent.get(key) {
                    if seen.insert(key) {
                        let entry = sides.entry(key).or_default();
                        entry.0.push(before.clone());
                        entry.1.push(after.clone());
                    }
                }
            }
        }
    }
    let fixed = |side: &[String]| {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in side {
            *counts.entry(s).or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        let share = most as f64 / side.len().max(1) as f64;
        share >= FIXED_SHARE
    };
    // Varied places must be seen, not assumed: two different words or marks beside it.
    let varied = |before: &[String], after: &[String]| {
        let seen: HashSet<(bool, &str)> = before
            .iter()
            .map(|b| (false, b.as_str()))
            .chain(after.iter().map(|a| (true, a.as_str())))
            .filter(|(_, s)| !s.contains('#') && *s != "^" && *s != "$")
            .collect();
        seen.iter().filter(|(side, _)| !side).count() >= 2
            || seen.iter().filter(|(side, _)| *side).count() >= 2
    };
    sides
        .into_iter()
        .filter(|(_, (before, after))| !fixed(before) && !fixed(after) && varied(before, after))
        .map(|(key, _)| key.to_owned())
        .collect()
}

/// A title's words with its numbers as `[N]` and each run of topic words as one `[Topic]`.
fn slot_title(words: &[&str], topic: &HashSet<String>) -> Vec<Word> {
    let mut out = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let key = core(words[i]);
        if topic.contains(&key) {
            let start = i;
            while i < words.len() && topic.contains(&core(words[i])) {
                i += 1;
            }
            let lead = punctuation(words[start]).0;
            let trail = punctuation(words[i - 1]).1;
            out.push(Word::new(format!("{lead}{TOPIC}{trail}")));
            continue;
        }
        out.push(Word::new(if is_number(&key) {
            slotted(words[i], NUMBER)
        } else {
            words[i].to_owned()
        }));
        i += 1;
    }
    out
}

/// Whether a word of a skeleton is a slot (`[N]`, `[Topic]:`, `$[N]`, …).
fn is_slot(text: &str) -> bool {
    text.contains('[') && text.contains(']')
}

/// The longest common subsequence of two titles' words (by key), with `[X]` wherever both
/// have words in between. Where only one has (an optional word), a slot beside the gap takes
/// the extra words; with no slot beside it, `[X]` takes them and the next common word (the
/// last one, at the end), so that the template matches both titles.
#[allow(clippy::many_single_char_names)] // the textbook LCS names
fn skeleton(a: &[Word], b: &[Word]) -> Vec<String> {
    let (n, m) = (a.len(), b.len());
    let width = m + 1;
    // table[i * width + j]: LCS length of a[i..] and b[j..].
    let mut table = vec![0usize; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[i * width + j] = if a[i].key == b[j].key {
                table[(i + 1) * width + j + 1] + 1
            } else {
                table[(i + 1) * width + j].max(table[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut parts: Vec<String> = Vec::new();
    let push_gap = |parts: &mut Vec<String>| {
        if parts.last().is_none_or(|p| p != GAP) {
            parts.push(GAP.to_owned());
        }
    };
    // Words skipped since the last common word, in `a` and in `b`.
    let (mut in_a, mut in_b) = (false, false);
    while i < n && j < m {
        if a[i].key == b[j].key {
            let mut absorb = false;
            if in_a && in_b {
                push_gap(&mut parts);
            } else if in_a || in_b {
                let beside_slot = parts.last().is_some_and(|p| is_slot(p)) || is_slot(&a[i].text);
                if !beside_slot {
                    // Words in one title only: a wildcard there would be empty in the other.
                    // It takes this common word too, so that it holds something in both.
                    push_gap(&mut parts);
                    absorb = true;
                }
            }
            (in_a, in_b) = (false, false);
            if !absorb {
                parts.push(a[i].text.clone());
            }
            i += 1;
            j += 1;
        } else if table[(i + 1) * width + j] >= table[i * width + j + 1] {
            in_a = true;
            i += 1;
        } else {
            in_b = true;
            j += 1;
        }
    }
    let (in_a, in_b) = (in_a || i < n, in_b || j < m);
    if in_a && in_b {
        push_gap(&mut parts);
    } else if (in_a || in_b) && !parts.last().is_some_and(|p| is_slot(p)) {
        // Trailing words in one title only: the wildcard takes the last common word too.
        if parts.last().is_some_and(|p| p != GAP) {
            parts.pop();
        }
        push_gap(&mut parts);
    }
    parts
}

/// The weight of a template's literal words: 2 a word, 1 a stop word.
fn weight(template: &Template) -> usize {
    template
        .literal_word_list()
        .map(|w| if STOP_WORDS.contains(&w) { 1 } else { 2 })
        .sum()
}

/// A candidate template: its text, literal weight, and which titles of the request it matches.
struct Candidate {
    template: String,
    literal: usize,
    matched: Vec<usize>,
    /// Titles of the whole request it matches: a template that matches titles of several
    /// clusters is a formula rather than a cluster's topic or a variant of a formula.
    support: usize,
}

/// The formulas of each cluster of a request (`clusters`: each one's titles), at most `most`
/// per cluster, each with the cluster's titles it matches. Skeletons come from every pair of
/// titles of the request, within a cluster and across clusters, so a formula that recurs
/// across the clusters of a batch is found even where a cluster shows it once; each cluster
/// then chooses among the candidates that match its own titles.
pub(super) fn formulas(clusters: &[Vec<String>], most: usize) -> Vec<Vec<Found>> {
    // Every title of the request, with its cluster, its slotted words and its folded text.
    let mut owner: Vec<usize> = Vec::new();
    let mut slotted: Vec<Vec<Word>> = Vec::new();
    let mut folded: Vec<String> = Vec::new();
    for (c, titles) in clusters.iter().enumerate() {
        let words: Vec<Vec<&str>> = titles
            .iter()
            .map(|t| t.split_whitespace().collect())
            .collect();
        let topic = topic_words(&words);
        for (title, words) in titles.iter().zip(&words) {
            owner.push(c);
            slotted.push(slot_title(words, &topic));
            folded.push(fold(title));
        }
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    for (i, a) in slotted.iter().enumerate() {
        for b in &slotted[i + 1..] {
            let template = skeleton(a, b).join(" ");
            if !seen.insert(template.to_lowercase()) {
                continue;
            }
            let compiled = Template::new(&template);
            let literal = weight(&compiled);
            if compiled.wildcards() == 0 || !enough_words(&compiled) {
                continue;
            }
            let matched: Vec<usize> = (0..folded.len())
                .filter(|&t| compiled.matches_folded(&folded[t]))
                .collect();
            if matched.len() >= 2 {
                candidates.push(Candidate {
                    template,
                    literal,
                    support: matched.len(),
                    matched,
                });
            }
        }
    }
    let mut first = 0;
    clusters
        .iter()
        .enumerate()
        .map(|(c, titles)| {
            let offset = first;
            first += titles.len();
            // The candidates as this cluster sees them: the titles of its own they match.
            let own: Vec<Candidate> = candidates
                .iter()
                .filter_map(|k| {
                    let matched: Vec<usize> = k
                        .matched
                        .iter()
                        .filter(|&&t| owner[t] == c)
                        .map(|&t| t - offset)
                        .collect();
                    (!matched.is_empty()).then(|| Candidate {
                        template: k.template.clone(),
                        literal: k.literal,
                        matched,
                        support: k.support,
                    })
                })
                .collect();
            choose(&own, titles.len(), most)
                .into_iter()
                .map(|k| {
                    let examples = k.matched.iter().map(|&t| titles[t].clone()).collect();
                    (k.template.clone(), examples)
                })
                .collect()
        })
        .collect()
}

/// The greedy choice of the module docs: up to `most` candidates, each adding at least
/// [`MIN_GAIN`] to the literal words explained.
fn choose(candidates: &[Candidate], titles: usize, most: usize) -> Vec<&Candidate> {
    let mut worth = vec![0usize; titles];
    let mut chosen: Vec<&Candidate> = Vec::new();
    let mut taken = vec![false; candidates.len()];
    while chosen.len() < most {
        let gain = |c: &Candidate| -> usize {
            let added: usize = c
                .matched
                .iter()
                .map(|&t| c.literal.saturating_sub(worth[t]))
                .sum();
            // A template that explains no title yet only refines: worth it when it says much
            // more about each (a sub-series), not when it adds a word or two (the topic's).
            let refines = c.matched.iter().all(|&t| worth[t] > 0);
            if refines && added < MIN_REFINEMENT * c.matched.len() {
                0
            } else {
                added * c.support
            }
        };
        let best = candidates
            .iter()
            .enumerate()
            .filter(|(i, _)| !taken[*i])
            .map(|(i, c)| (i, c, gain(c)))
            .max_by(|(_, a, ga), (_, b, gb)| {
                ga.cmp(gb)
                    .then(a.matched.len().cmp(&b.matched.len()))
                    .then(a.literal.cmp(&b.literal))
                    .then(b.template.cmp(&a.template))
            });
        let Some((i, c, g)) = best else { break };
        if g < MIN_GAIN * c.support {
            break;
        }
        taken[i] = true;
        for &t in &c.matched {
            worth[t] = worth[t].max(c.literal);
        }
        chosen.push(c);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn titles(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| (*t).to_owned()).collect()
    }

    /// One cluster alone in its request.
    fn alone(titles: &[String], most: usize) -> Vec<Found> {
        formulas(&[titles.to_vec()], most).remove(0)
    }

    #[test]
    fn the_topic_becomes_a_slot_and_formulas_read_the_same_across_topics() {
        let cars = titles(&[
            "7 Electric Cars Hacks That Actually Work",
            "Why Electric Cars Are Overrated",
            "12 Electric Cars Hacks That Actually Work",
            "Why Electric Cars Are Overrated (Honestly)",
            "The Truth About Electric Cars",
            "Electric Cars: What Nobody Tells You",
        ]);
        let bread = titles(&[
            "Why Sourdough Bread Is Overrated",
            "5 Sourdough Bread Hacks That Actually Work",
            "3 Sourdough Bread Hacks That Actually Work",
            "Sourdough Bread: What Nobody Tells You",
            "Sourdough Bread: What Nobody Tells You About Flour",
        ]);
        let a = alone(&cars, 5);
        let b = alone(&bread, 5);
        assert_eq!(a[0].0, "[N] [Topic] Hacks That Actually Work");
        assert_eq!(a[0].1.len(), 2);
        assert!(b.iter().any(|f| f.0 == a[0].0), "{b:?}");
        assert!(a.iter().all(|f| !f.0.contains("Electric")), "{a:?}");
    }

    #[test]
    fn words_anchored_at_the_end_are_a_formula_not_a_topic() {
        let hot_ones = titles(&[
            "Gordon Ramsay Eats Spicy Wings | Hot Ones",
            "Kevin Hart Eats Spicy Wings | Hot Ones",
            "Shaq Tries Not to Cry | Hot Ones",
            "Scarlett Johansson Eats Spicy Wings | Hot Ones",
        ]);
        let found = alone(&hot_ones, 5);
        assert_eq!(found[0].0, "[X] Eats Spicy Wings | Hot Ones");
        assert_eq!(found[0].1.len(), 3);
        assert!(found.iter().all(|f| !f.0.contains(TOPIC)), "{found:?}");
    }

    #[test]
    fn a_generic_template_across_two_formulas_is_not_chosen() {
        let mixed = titles(&[
            "How to Fix a Flat Tire Fast",
            "How to Fix a Leaking Tap Fast",
            "How to Paint Like a Pro",
            "How to Cook Like a Pro",
        ]);
        let found: Vec<String> = alone(&mixed, 5).into_iter().map(|f| f.0).collect();
        assert!(
            found.contains(&"How to [X] Like a Pro".to_owned()),
            "{found:?}"
        );
        assert!(
            found.contains(&"How to Fix a [X] Fast".to_owned()),
            "{found:?}"
        );
        assert!(!found.contains(&"How to [X]".to_owned()), "{found:?}");
    }

    #[test]
    fn numbers_and_their_punctuation() {
        assert!(is_number("1,000") && is_number("100k") && is_number("90s") && is_number("2x"));
        assert!(!is_number("x2") && !is_number("") && !is_number("5star"));
        assert_eq!(slotted("$1,000!", NUMBER), "$[N]!");
        assert_eq!(punctuation("(Honestly)"), ("(", ")"));
        assert_eq!(punctuation("--"), ("--", ""));
    }

    #[test]
    fn no_shared_formula_gives_no_pattern() {
        let found = alone(&titles(&["Alpha beta gamma", "Delta epsilon zeta"]), 5);
        assert!(found.is_empty());
    }

    #[test]
    fn a_formula_shown_once_per_cluster_is_found_across_the_batch() {
        let batch = [
            titles(&[
                "7 Sourdough Hacks That Actually Work",
                "Why Sourdough Is Overrated",
                "Sourdough: A Love Story",
            ]),
            titles(&[
                "The Truth About Chess",
                "12 Chess Hacks That Actually Work",
                "Chess at Midnight",
            ]),
        ];
        let found = formulas(&batch, 5);
        for (cluster, own) in found.iter().enumerate() {
            let hacks = own
                .iter()
                .find(|f| f.0 == "[N] [Topic] Hacks That Actually Work");
            let hacks = hacks.unwrap_or_else(|| panic!("cluster {cluster}: {own:?}"));
            assert_eq!(
                hacks.1.len(),
                1,
                "only the cluster's own titles are its examples"
            );
        }
    }
}
