// The runs, kept in IndexedDB so that a reload or a closed tab loses nothing. Each run is one
// record (the shape of Rust's `Run`, crate/run.rs) under its `id`. A browser that refuses
// storage (private mode, quota, disabled) gives `null` from openStore and a reason to show.

const DB = 'mnist7k';
const RUNS = 'runs';

const done = (request) => new Promise((resolve, reject) => {
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});

// { store, problem }: store is null when the browser refuses IndexedDB, problem says why.
export async function openStore() {
  try {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(RUNS, { keyPath: 'id' });
    const db = await done(request);
    const transact = (mode, work) => new Promise((resolve, reject) => {
      const tx = db.transaction(RUNS, mode);
      const result = work(tx.objectStore(RUNS));
      tx.oncomplete = () => resolve(result.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('the browser aborted the write'));
    });
    return {
      store: {
        all: () => transact('readonly', (s) => s.getAll()),
        put: (run) => transact('readwrite', (s) => s.put(run)),
        remove: (id) => transact('readwrite', (s) => s.delete(id)),
      },
      problem: null,
    };
  } catch (error) {
    return { store: null, problem: error?.message ?? String(error) };
  }
}
