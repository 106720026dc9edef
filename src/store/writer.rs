//! [`Writer`]: the runner's journal writes, off the async executor. One thread of its own takes
//! every answer waiting to be recorded and records them together ([`RunStore::put_all`]: one
//! transaction and one sync for [`SqliteStore`](super::SqliteStore)); each answer's write is
//! acknowledged only once durable. The runner hears of an answer only after its
//! acknowledgement, and a slow journal (a sync, a lock) holds no executor thread.

use std::sync::Arc;
use std::sync::mpsc;

use futures::channel::oneshot;

use super::{RequestKey, RunStore};
use crate::backend::ChatResponse;

/// Most answers recorded together.
const MAX_GROUP: usize = 256;

/// One answer to record, and who waits for it.
struct Write {
    key: RequestKey,
    answer: ChatResponse,
    done: oneshot::Sender<Result<(), String>>,
}

/// The journal's writer thread. Dropping it lets the thread end once its queue is empty.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Write>,
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Write")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer thread for `store`; `None` when the thread cannot be started (the runner then
    /// writes inline).
    pub(crate) fn start(store: Arc<dyn RunStore>) -> Option<Self> {
        let (queue, writes) = mpsc::channel::<Write>();
        std::thread::Builder::new()
            .name("dynbatch-journal".into())
            .spawn(move || {
                while let Ok(first) = writes.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match writes.try_recv() {
                            Ok(next) => group.push(next),
                            Err(_) => break,
                        }
                    }
                    let (entries, waiting): (Vec<(RequestKey, ChatResponse)>, Vec<_>) = group
                        .into_iter()
                        .map(|w| ((w.key, w.answer), w.done))
                        .unzip();
                    let result = store.put_all(&entries).map_err(|e| e.to_string());
                    for done in waiting {
                        // The run may have gone (interrupted and dropped): nobody to tell.
                        let _ = done.send(result.clone());
                    }
                }
            })
            .ok()?;
        Some(Self { queue })
    }

    /// Records `answer` under `key`; resolves once it is durable (or with why it is not).
    pub(crate) fn write(
        &self,
        key: RequestKey,
        answer: ChatResponse,
    ) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let (done, acknowledged) = oneshot::channel();
        let sent = self.queue.send(Write { key, answer, done }).is_ok();
        async move {
            if !sent {
                return Err("the journal's writer thread has stopped".to_owned());
            }
            acknowledged
                .await
                .unwrap_or_else(|_| Err("the journal's writer thread has stopped".to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn writes_are_acknowledged_once_recorded() {
        let store = MemoryStore::default();
        let writer = Writer::start(Arc::new(store.clone())).unwrap();
        let key = RequestKey::of(&crate::backend::ChatRequest::new("m", Vec::new()));
        let answer = ChatResponse {
            content: "{}".into(),
            ..ChatResponse::default()
        };
        let acknowledged = futures::executor::block_on(writer.write(key, answer.clone()));
        assert_eq!(acknowledged, Ok(()));
        assert_eq!(store.get(&key).unwrap(), Some(answer));
    }
}
