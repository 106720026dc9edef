//! `read_clusters` reads exactly what `serde_json` reads, whatever the chunks its reader
//! returns, and says where the input is wrong.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::Read;

use dynbatch::ReadError;
use dynbatch::testing::arb_clusters;
use std::num::NonZeroUsize;

use dynbatch::{Cluster, read_clusters, read_clusters_parallel};
use proptest::prelude::*;

/// A reader that returns at most `sizes[i % len]` bytes per call.
struct Chunky<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    call: usize,
}

impl Read for Chunky<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.call % self.sizes.len()].max(1);
        self.call += 1;
        let n = size.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn bundled() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/data/clusters.json"
    ))
    .unwrap()
}

#[test]
fn the_bundled_file_reads_the_same_in_any_chunks() {
    let text = bundled();
    let expected: Vec<Cluster> = serde_json::from_str(&text).unwrap();
    assert_eq!(read_clusters(text.as_bytes()).unwrap(), expected);
    for sizes in [vec![1], vec![2, 3, 5, 7], vec![4096], vec![1 << 20]] {
        let reader = Chunky {
            data: text.as_bytes(),
            sizes,
            call: 0,
        };
        assert_eq!(read_clusters(reader).unwrap(), expected);
    }
}

proptest! {
    /// Invariant `same_as_serde_json`: for any clusters, any formatting and any chunking, the
    /// streamed read equals serde_json's read of the whole text.
    #[test]
    fn same_as_serde_json(
        clusters in arb_clusters(0..30),
        pretty in any::<bool>(),
        sizes in prop::collection::vec(1usize..64, 1..5),
    ) {
        let text = if pretty {
            serde_json::to_string_pretty(&clusters).unwrap()
        } else {
            serde_json::to_string(&clusters).unwrap()
        };
        let expected: Vec<Cluster> = serde_json::from_str(&text).unwrap();
        let reader = Chunky { data: text.as_bytes(), sizes, call: 0 };
        prop_assert_eq!(read_clusters(reader).unwrap(), expected);
    }
}

#[test]
fn errors_say_what_and_where() {
    let one = r#"{"id": "a", "size": 1, "avg_performance": 2.0, "thread_sources": [], "is_wide": false, "videos": [{"title": "T ] } [ \" {", "performance_ratio": 2.0}]}"#;
    let syntax = |text: &str| match read_clusters(text.as_bytes()) {
        Err(ReadError::Syntax { offset, message }) => (offset, message),
        other => panic!("{text}: {other:?}"),
    };
    assert!(syntax("").1.contains("found nothing"));
    assert_eq!(syntax("  {}").0, 2);
    assert!(syntax("  {}").1.contains("expected a JSON array"));
    assert!(syntax("[").1.contains("ends inside the array"));
    assert!(
        syntax(&format!("[{one}"))
            .1
            .contains("ends inside the array")
    );
    assert!(
        syntax(&format!("[{one},]"))
            .1
            .contains("comma before the closing")
    );
    assert!(
        syntax(&format!("[{one} {one}]"))
            .1
            .contains("expected `,` or `]`")
    );
    assert!(
        syntax(&format!("[{one}] x"))
            .1
            .contains("after the array's closing")
    );
    // Strings with brackets and escaped quotes inside do not confuse it.
    assert_eq!(
        read_clusters(format!(" [ {one} , {one} ]\n").as_bytes())
            .unwrap()
            .len(),
        2
    );
    assert!(read_clusters("[]".as_bytes()).unwrap().is_empty());
    // A bad element is named by its index.
    for (bad, what) in [
        ("5", "integer"),
        ("\"x\"", "string"),
        ("{\"id\": \"b\"}", "missing field"),
    ] {
        let text = format!("[{one}, {bad}]");
        match read_clusters(text.as_bytes()) {
            Err(ReadError::Cluster {
                index: 1,
                offset,
                source,
            }) => {
                assert_eq!(offset, text.find(bad).unwrap() as u64);
                assert!(source.to_string().contains(what), "{source}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

/// `n` clusters as JSON, each video with two fields the crate does not read (kept in `extra`),
/// and every tenth cluster with a field of its own.
fn many(n: usize, pretty: bool) -> String {
    let mut clusters = dynbatch::testing::distinct_clusters(n);
    for (i, c) in clusters.iter_mut().enumerate() {
        for (j, v) in c.videos.iter_mut().enumerate() {
            v.extra
                .insert("video_id", serde_json::json!(format!("v{i}-{j}")));
            v.extra.insert("views", serde_json::json!(i * 1000 + j));
        }
        if i % 10 == 0 {
            c.extra.insert(
                "label",
                serde_json::json!({"text": "a \"quoted\" [label] {x}", "n": [1, 2.5]}),
            );
        }
    }
    if pretty {
        serde_json::to_string_pretty(&clusters).unwrap()
    } else {
        serde_json::to_string(&clusters).unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Invariant `parallel_same_as_serial`: spread over any number of threads, the read gives
    /// the same clusters as serde_json's read of the whole text, for inputs large enough that
    /// the threads get work.
    #[test]
    fn parallel_same_as_serial(
        n in 0usize..600,
        pretty in any::<bool>(),
        threads in 1usize..5,
    ) {
        let text = many(n, pretty);
        let expected: Vec<Cluster> = serde_json::from_str(&text).unwrap();
        let threads = NonZeroUsize::new(threads).unwrap();
        prop_assert_eq!(read_clusters_parallel(text.as_bytes(), threads).unwrap(), expected);
    }
}

#[test]
fn in_parallel_the_first_bad_cluster_is_the_error() {
    let text = many(600, false);
    let mut clusters: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    clusters[250] = serde_json::json!({"id": "bad"});
    clusters[550] = serde_json::json!(5);
    let text = serde_json::to_string(&clusters).unwrap();
    for threads in [1, 2, 3] {
        let threads = NonZeroUsize::new(threads).unwrap();
        match read_clusters_parallel(text.as_bytes(), threads) {
            Err(ReadError::Cluster {
                index: 250, source, ..
            }) => {
                assert!(source.to_string().contains("missing field"), "{source}");
            }
            other => panic!("{threads}: {other:?}"),
        }
    }
    // A bad cluster before a syntax error is the first error too.
    let broken = format!("{},]", &text[..text.len() - 1]);
    assert!(matches!(
        read_clusters_parallel(broken.as_bytes(), NonZeroUsize::new(2).unwrap()),
        Err(ReadError::Cluster { index: 250, .. })
    ));
}
