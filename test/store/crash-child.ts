/**
 * Child process of sqlite-crash.test.ts: appends events forever and prints the seq of every acknowledged
 * event, until the parent kills it with SIGKILL.
 */
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'

const path = process.argv[2]
if (!path) throw new Error('usage: crash-child.ts DB_PATH')
const store = createRuntimeStore(createSqliteDialect({ path }), { origin: 'gw/crash' })
await store.init()
for (let round = 0; ; round++) {
  const appends = Array.from({ length: 8 }, (_, i) =>
    store
      .append([
        {
          kind: 'node.started',
          time: new Date().toISOString(),
          session_id: `s${round}`,
          payload: { round, i, session: { status: 'running' } },
        },
      ])
      .then((events) => process.stdout.write(events.map((e) => `${e.seq}\n`).join(''))),
  )
  await Promise.all(appends)
}
