import { loadOrCreateSigningKey } from '../../src/ledger/key-store.js'
import { createLedger } from '../../src/ledger/ledger.js'
import { createRuntimeStore, type RuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect, type SqliteDialectOptions } from '../../src/store/sqlite/sqlite-dialect.js'

/**
 * Runs `write` against a SQLite store as a gateway of `origin` would, with a ledger signing checkpoints with the
 * key of the data dir `data` (created if missing), then closes both. Returns the key's verifier form and what
 * `write` returned.
 */
export async function writeSignedLog<T>(
  options: { sqlite: SqliteDialectOptions; data: string; origin: string; checkpointEvery: number },
  write: (store: RuntimeStore) => Promise<T>,
): Promise<{ verifierKey: string; written: T }> {
  const key = await loadOrCreateSigningKey(options.data, options.origin)
  const store = createRuntimeStore(createSqliteDialect(options.sqlite), { origin: options.origin })
  await store.init()
  // Interval 0: checkpoints come only from the event count, so where they fall does not depend on timing.
  const ledger = createLedger({
    store,
    signer: key.signer,
    checkpointEvery: options.checkpointEvery,
    checkpointIntervalMillis: 0,
  })
  await ledger.start()
  try {
    return { verifierKey: key.verifierKey, written: await write(store) }
  } finally {
    await ledger.close()
    await store.close()
  }
}
