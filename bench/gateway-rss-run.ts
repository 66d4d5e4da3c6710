/**
 * Runs the gateway memory burst on its own and prints JSON: `--clients N` (default 200). It starts a stand-in
 * and a gateway (built CLI: `npm run build` first), runs the burst, then waits until the gateway's store holds
 * every succeeded prompt's session and reports that wait as the audit trail's lag behind the clients.
 */
import Database from 'better-sqlite3'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { startGatewayProcess, startSimProcess } from './bench-kit.js'
import { measureGatewayRss } from './gateway-rss.js'

const i = process.argv.indexOf('--clients')
const clients = i >= 0 ? Number(process.argv[i + 1]) : 200
if (!(clients > 0)) throw new Error('--clients takes a positive number')

function sessions(path: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    return (db.prepare("SELECT count(*) AS n FROM sessions WHERE status = 'success'").get() as { n: number })
      .n
  } finally {
    db.close()
  }
}

const sim = await startSimProcess(await mkdtemp(join(tmpdir(), 'rss-sim-')), 50)
const data = await mkdtemp(join(tmpdir(), 'rss-gw-'))
const gw = await startGatewayProcess(sim.url, data)
try {
  const result = await measureGatewayRss({ gateway: gw, clients })
  const ended = performance.now()
  let stored = 0
  // Polling a file another process writes: there is no event to wait on across processes.
  for (let n = 0; n < 1200 && (stored = sessions(join(data, 'audit.sqlite'))) < result.promptsSucceeded; n++)
    await delay(100)
  console.log(
    JSON.stringify(
      { ...result, sessionsStored: stored, trailLagMs: Math.round(performance.now() - ended) },
      null,
      2,
    ),
  )
} finally {
  await gw.stop()
  await sim.stop()
}
