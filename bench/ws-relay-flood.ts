/**
 * Runs the WebSocket relay ceiling on its own: a stand-in, the fast upstream in front of it, and a gateway on
 * that upstream, then prints the figures as JSON. `--nodes N --steps N --rounds N`, `--cpu-prof DIR` to profile
 * the gateway; needs `npm run build`.
 */
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startGatewayProcess, startSimProcess } from './bench-kit.js'
import { startFloodUpstream } from './flood-upstream.js'
import { measureWsRelayFlood } from './ws-relay.js'

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback
  return Number.isFinite(v) && v > 0 ? v : fallback
}

const sim = await startSimProcess(await mkdtemp(join(tmpdir(), 'relay-sim-')), 20)
const flood = await startFloodUpstream({ simUrl: sim.url })
const profDir = process.argv.indexOf('--cpu-prof')
const nodeArgs = profDir >= 0 ? ['--cpu-prof', `--cpu-prof-dir=${process.argv[profDir + 1]}`] : []
const gw = await startGatewayProcess(flood.url, await mkdtemp(join(tmpdir(), 'relay-gw-')), nodeArgs)
try {
  const result = await measureWsRelayFlood({
    directUrl: flood.url,
    gatewayUrl: gw.url,
    nodes: flag('nodes', 20),
    stepsPerNode: flag('steps', 1000),
    rounds: flag('rounds', 3),
  })
  console.log(JSON.stringify({ gatewayPid: gw.pid, ...result }, null, 2))
} finally {
  await gw.stop()
  await flood.close()
  await sim.stop()
}
