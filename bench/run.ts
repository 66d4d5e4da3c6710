/**
 * comfy-audit benchmark: `npm run bench -- --out FILE [--quick]`.
 *
 * Prints a table (figure, value, goal, met) and writes the figures as JSON. It reports and never judges:
 * the exit status is 0 whatever the figures, non-zero only when a measurement itself broke. Everything runs
 * on loopback. The ComfyUI stand-in (src/sim, via `comfy-audit sim`) and the gateway (`comfy-audit serve`) run
 * from the built CLI, each in its own process, as they would in production; capture runs in this process.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import Database from 'better-sqlite3'
import { loadConfig } from '../src/config/config.js'
import { startAuditGateway } from '../src/create-gateway.js'
import {
  ensureBuild,
  startGatewayProcess,
  startSimProcess,
  type BuildOutcome,
  type ChildServer,
  type GatewayProcess,
} from './bench-kit.js'
import { measureCaptureThroughput, type CaptureThroughputResult } from './capture-throughput.js'
import { measureCliStart, type CliStartResult } from './cli-start.js'
import { measurePromptLatency, type PromptLatencyResult } from './prompt-latency.js'
import { measureStoragePerSession, type StoragePerSessionResult } from './storage-per-session.js'
import { measureVerifyThroughput, type VerifyThroughputResult } from './verify-throughput.js'
import { measureGatewayRss, type GatewayRssResult } from './gateway-rss.js'
import { measureProxyLatency, type ProxyLatencyResult } from './proxy-latency.js'
import { startFloodUpstream } from './flood-upstream.js'
import {
  measureWsRelay,
  measureWsRelayFlood,
  type WsRelayFloodResult,
  type WsRelayResult,
} from './ws-relay.js'
import { measureScaleQueries, type ScaleQueryResult } from './scale-kit.js'

interface Args {
  out: string | null
  quick: boolean
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { out: null, quick: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--out') args.out = argv[++i] ?? null
    else if (a.startsWith('--out=')) args.out = a.slice('--out='.length)
    else if (a === '--quick') args.quick = true
    else if (a === '--help' || a === '-h') {
      console.log(
        'usage: npm run bench -- [--out FILE] [--quick]\n  --quick  smaller runs (a smoke test; figures are less stable)',
      )
      process.exit(0)
    } else throw new Error(`unknown argument ${JSON.stringify(a)} (expected --out FILE or --quick)`)
  }
  if (args.out === '') args.out = null
  return args
}

const log = (line: string): void => void process.stderr.write(`[bench] ${line}\n`)

/** Time scale of the stand-in: nodes take 1/50 of the recorded time. */
const SIM_SPEED = 50

interface Figure {
  readonly key: string
  readonly label: string
  readonly value: number | null
  readonly unit: string
  readonly goal: string
  readonly meets: (v: number) => boolean
  /** Where the figure was measured (store size, sessions), when that matters for it. */
  readonly at?: Record<string, unknown>
  /** Why the value is null when it was not measured (rather than broke). */
  readonly reason?: string
}

/** Rows the gateway's SQLite store holds after it stopped. */
function countRecorded(path: string): Record<string, number> {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    const n = (sql: string): number => (db.prepare(sql).get() as { n: number }).n
    return {
      sessions: n('SELECT count(*) AS n FROM sessions'),
      success: n("SELECT count(*) AS n FROM sessions WHERE status = 'success'"),
      node_runs: n('SELECT count(*) AS n FROM node_runs'),
      events: n('SELECT count(*) AS n FROM events'),
    }
  } finally {
    db.close()
  }
}

/** Which measurement a figure comes from, for the reason of a null figure. */
const SOURCE: Readonly<Record<string, string>> = {
  proxy_p50_overhead_ms: 'proxy latency',
  proxy_p99_overhead_ms: 'proxy latency',
  prompt_p50_overhead_ms: 'prompt latency',
  prompt_p99_overhead_ms: 'prompt latency',
  ws_relay_ratio: 'websocket relay (fast upstream)',
  capture_records_per_s: 'capture throughput',
  peak_rss_mb: 'gateway rss',
  bytes_per_session_repeat: 'storage per session',
  bytes_per_session_new: 'storage per session',
  verify_events_per_s: 'verify throughput',
  cli_start_ms: 'cli start',
}

function failureFor(key: string, failures: Readonly<Record<string, string>>): string {
  const source = SOURCE[key]
  const message = source === undefined ? undefined : failures[source]
  if (message !== undefined) return `${source} failed: ${message.split('\n')[0]}`
  const other = Object.entries(failures)[0]
  return other ? `not reached: ${other[0]} failed first` : 'not measured'
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2))
  const quick = args.quick
  const startedAt = new Date().toISOString()
  const failures: Record<string, string> = {}
  const attempt = async <T>(name: string, fn: () => Promise<T>): Promise<T | null> => {
    log(`${name} ...`)
    const t0 = performance.now()
    try {
      const value = await fn()
      log(`${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
      return value
    } catch (err) {
      failures[name] = err instanceof Error ? (err.stack ?? err.message) : String(err)
      log(`${name} FAILED: ${failures[name]}`)
      return null
    }
  }

  let build: BuildOutcome | null = null
  try {
    build = ensureBuild(log)
  } catch (err) {
    failures.build = err instanceof Error ? err.message : String(err)
    log(`build FAILED: ${failures.build}`)
  }

  // In-process and CPU-bound: runs first, while no server competes for the two cores.
  const capture: CaptureThroughputResult | null = await attempt('capture throughput', () =>
    measureCaptureThroughput(quick ? { warmupReplays: 5, maxReplays: 200, maxMillis: 2000 } : {}),
  )

  const verify: VerifyThroughputResult | null = await attempt('verify throughput', () =>
    measureVerifyThroughput({ sessions: quick ? 600 : 3000 }),
  )
  const cliStart: CliStartResult | null =
    build === null ? null : await attempt('cli start', async () => measureCliStart(quick ? 5 : 10))

  const dirs: string[] = []
  const tempDir = async (prefix: string): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), `comfy-audit-bench-${prefix}-`))
    dirs.push(dir)
    return dir
  }
  const children: ChildServer[] = []
  const newSim = async (): Promise<ChildServer> => {
    const sim = await startSimProcess(await tempDir('sim'), SIM_SPEED)
    children.push(sim)
    return sim
  }
  const newGateway = async (sim: ChildServer, dataDir: string): Promise<GatewayProcess> => {
    const gw = await startGatewayProcess(sim.url, dataDir)
    children.push(gw)
    return gw
  }
  let latency: ProxyLatencyResult | null = null
  let latencyInProcess: ProxyLatencyResult | null = null
  let relay: WsRelayResult | null = null
  let relayFlood: WsRelayFloodResult | null = null
  let promptLatency: PromptLatencyResult | null = null
  let storage: StoragePerSessionResult | null = null
  let rss: GatewayRssResult | null = null
  let recorded: Record<string, number> | null = null
  let scale: ScaleQueryResult | null = null
  const pairs = quick ? { warmupPairs: 100, pairs: 1000 } : {}
  try {
    if (build !== null) {
      const sim = await attempt('stand-in start', newSim)
      const gw = sim && (await attempt('gateway start', async () => newGateway(sim, await tempDir('gw'))))
      if (sim && gw) {
        latency = await attempt('proxy latency', () =>
          measureProxyLatency({ directUrl: sim.url, gatewayUrl: gw.url, ...pairs }),
        )
        promptLatency = await attempt('prompt latency', () =>
          measurePromptLatency({
            directUrl: sim.url,
            gatewayUrl: gw.url,
            ...(quick ? { warmupPairs: 5, pairs: 40 } : {}),
          }),
        )
        latencyInProcess = await attempt('proxy latency (in-process gateway)', async () => {
          const config = loadConfig({
            env: {},
            flags: {
              'comfyui.url': sim.url,
              listen: '127.0.0.1:0',
              data: await tempDir('gw'),
              origin: 'comfy-audit/bench',
            },
          })
          if (!config.ok) throw new Error(`config: ${config.problems.join('; ')}`)
          const audit = await startAuditGateway(config.value, { sweepIntervalMillis: 0 })
          try {
            return await measureProxyLatency({ directUrl: sim.url, gatewayUrl: audit.url, ...pairs })
          } finally {
            await audit.close()
          }
        })
        relay = await attempt('websocket relay', () =>
          measureWsRelay({ directUrl: sim.url, gatewayUrl: gw.url, ...(quick ? { nodes: 4 } : {}) }),
        )
        await gw.stop()
        // The relay ceiling: an upstream that sends as fast as the socket drains, not at the stand-in's pace.
        relayFlood = await attempt('websocket relay (fast upstream)', async () => {
          const flood = await startFloodUpstream({ simUrl: sim.url })
          try {
            const floodGw = await startGatewayProcess(flood.url, await tempDir('gw'))
            children.push(floodGw)
            try {
              return await measureWsRelayFlood({
                directUrl: flood.url,
                gatewayUrl: floodGw.url,
                ...(quick ? { nodes: 4, rounds: 1 } : {}),
              })
            } finally {
              await floodGw.stop()
            }
          } finally {
            await flood.close()
          }
        })
      }
      await sim?.stop()

      // A fresh stand-in and gateway, so the store holds only the sessions whose growth is measured.
      const storageSim = await attempt('stand-in start (storage)', newSim)
      const storageData = await tempDir('gw')
      const storageGw =
        storageSim && (await attempt('gateway start (storage)', () => newGateway(storageSim, storageData)))
      if (storageGw) {
        storage = await attempt('storage per session', () =>
          measureStoragePerSession({
            gatewayUrl: storageGw.url,
            storePath: join(storageData, 'audit.sqlite'),
            prompts: quick ? 10 : 30,
          }),
        )
        await storageGw.stop()
      }
      await storageSim?.stop()

      // A fresh stand-in and gateway: the peak RSS is the burst's alone, and the store holds only its sessions.
      const rssSim = await attempt('stand-in start (rss)', newSim)
      const rssData = await tempDir('gw')
      const fresh = rssSim && (await attempt('gateway start (rss)', () => newGateway(rssSim, rssData)))
      if (fresh) {
        rss = await attempt('gateway rss', () =>
          measureGatewayRss({ gateway: fresh, clients: quick ? 50 : 200 }),
        )
        await fresh.stop()
        // What that gateway committed: the burst must have gone through the audit path, not around it.
        recorded = await attempt('gateway store check', async () =>
          countRecorded(join(rssData, 'audit.sqlite')),
        )
      }
    }
    // The query set of bench:scale at a size a bench run affords (npm run bench:scale builds the big stores).
    const scaleDir = await tempDir('scale')
    scale = await attempt('scale queries', () =>
      measureScaleQueries({ sessions: quick ? 1000 : 5000, repeat: quick ? 10 : 30, dir: scaleDir }),
    )
  } finally {
    for (const child of children.reverse()) await child.stop().catch(() => {})
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  }

  const figures: Figure[] = [
    {
      key: 'proxy_p50_overhead_ms',
      label: 'proxy p50 overhead',
      value: latency?.p50OverheadMs ?? null,
      unit: 'ms',
      goal: '<= 1',
      meets: (v) => v <= 1,
    },
    {
      key: 'proxy_p99_overhead_ms',
      label: 'proxy p99 overhead',
      value: latency?.p99OverheadMs ?? null,
      unit: 'ms',
      goal: '<= 5',
      meets: (v) => v <= 5,
    },
    {
      key: 'prompt_p50_overhead_ms',
      label: `POST /prompt p50 overhead (${promptLatency?.nodes ?? 30}-node workflow)`,
      value: promptLatency?.p50OverheadMs ?? null,
      unit: 'ms',
      goal: '<= 2',
      meets: (v) => v <= 2,
    },
    {
      key: 'prompt_p99_overhead_ms',
      label: 'POST /prompt p99 overhead',
      value: promptLatency?.p99OverheadMs ?? null,
      unit: 'ms',
      goal: '<= 10',
      meets: (v) => v <= 10,
    },
    {
      key: 'ws_relay_ratio',
      label: 'WS relay ratio (gateway/direct, fast upstream)',
      value: relayFlood?.ratio ?? null,
      unit: '',
      goal: '>= 0.9',
      meets: (v) => v >= 0.9,
    },
    {
      key: 'capture_records_per_s',
      label: 'capture node runs committed/s',
      value: capture?.recordsPerSecond ?? null,
      unit: '/s',
      goal: '>= 50000',
      meets: (v) => v >= 50_000,
    },
    {
      key: 'peak_rss_mb',
      label: `gateway peak RSS (${rss?.clients ?? (quick ? 50 : 200)} clients)`,
      value: rss?.peakRssMb ?? null,
      unit: 'MiB',
      goal: '<= 300',
      meets: (v) => v <= 300,
    },
    {
      key: 'bytes_per_session_repeat',
      label: 'store growth per re-run (new seed)',
      value: storage?.bytesPerSessionRepeat ?? null,
      unit: 'B',
      goal: '<= 8192',
      meets: (v) => v <= 8192,
      ...(storage ? { at: { store: storage.measuredAt.repeat, to: storage.measuredAt.new } } : {}),
    },
    {
      key: 'bytes_per_session_new',
      label: 'store growth per new workflow',
      value: storage?.bytesPerSessionNew ?? null,
      unit: 'B',
      goal: '<= 40960',
      meets: (v) => v <= 40_960,
      ...(storage ? { at: { store: storage.measuredAt.new, to: storage.measuredAt.end } } : {}),
    },
    {
      key: 'query_sessions_p95_ms',
      label: 'sessions by person + day p95 (audit API)',
      value: scale?.queries['sessions by person + day']?.p95_ms ?? null,
      unit: 'ms',
      goal: '< 50',
      meets: (v) => v < 50,
      ...(scale
        ? { at: { sessions: scale.sessions, node_runs: scale.nodeRuns, store: 'sqlite' } }
        : { reason: 'the scale query set did not run' }),
    },
    {
      key: 'trace_sha_p95_ms',
      label: 'trace by SHA-256 p95',
      value: scale?.queries['trace by SHA-256']?.p95_ms ?? null,
      unit: 'ms',
      goal: '< 10',
      meets: (v) => v < 10,
      ...(scale
        ? { at: { sessions: scale.sessions, node_runs: scale.nodeRuns, store: 'sqlite' } }
        : { reason: 'the scale query set did not run' }),
    },
    {
      key: 'trace_png_p95_ms',
      label: 'trace by PNG prompt chunk p95',
      value: scale?.queries['trace by PNG prompt chunk']?.p95_ms ?? null,
      unit: 'ms',
      goal: '< 50',
      meets: (v) => v < 50,
      ...(scale
        ? { at: { sessions: scale.sessions, node_runs: scale.nodeRuns, store: 'sqlite' } }
        : { reason: 'the scale query set did not run' }),
    },
    {
      key: 'verify_events_per_s',
      label: 'verify events/s (SQLite)',
      value: verify?.events_per_second ?? null,
      unit: '/s',
      goal: '>= 200000',
      meets: (v) => v >= 200_000,
      ...(verify
        ? { at: { events: verify.events, sessions: verify.sessions, store_bytes: verify.store_bytes } }
        : {}),
    },
    {
      key: 'cli_start_ms',
      // The goal holds for both commands, so the figure is the slower median: `--help` alone once hid a
      // 197 ms `sessions` behind a met goal.
      label: 'CLI start, slower of --help and sessions (median wall time)',
      value: cliStart ? Math.max(cliStart.help_p50_ms, cliStart.sessions_p50_ms) : null,
      unit: 'ms',
      goal: '< 150',
      meets: (v) => v < 150,
      ...(cliStart
        ? {
            at: {
              help_p50_ms: cliStart.help_p50_ms,
              sessions_p50_ms: cliStart.sessions_p50_ms,
              store_sessions: cliStart.store_sessions,
              bare_node_p50_ms: cliStart.bare_node_p50_ms,
              runs: cliStart.runs,
            },
          }
        : {}),
    },
  ]

  const cpuList = cpus()
  const machine = {
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpu_count: cpuList.length,
    cpu_model: cpuList[0]?.model ?? 'unknown',
    total_memory_mb: Math.round(totalmem() / 2 ** 20),
    load_average_1m_at_end: Math.round(loadavg()[0]! * 100) / 100,
    note: 'Figures come from one run on a machine whose cores may be shared with other work; compare ratios and overheads measured within a run, not absolute values across machines.',
  }

  const rows = figures.map((f) => [
    f.label,
    f.value === null
      ? f.reason !== undefined
        ? 'not measured'
        : 'FAILED'
      : `${f.value}${f.unit ? ' ' + f.unit : ''}`,
    f.goal + (f.unit && f.unit !== '/s' ? ` ${f.unit}` : f.unit),
    f.value === null ? '-' : f.meets(f.value) ? 'yes' : 'NO',
  ])
  const header = ['figure', 'value', 'goal', 'meets goal']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
  const out: string[] = [
    '',
    `comfy-audit benchmark${quick ? ' (--quick)' : ''}: node ${machine.node}, ${machine.cpu_count} CPU(s) (${machine.cpu_model}), load ${machine.load_average_1m_at_end}`,
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
  ]
  if (latency) {
    out.push(
      '',
      `proxy: GET ${latency.path}, ${latency.requests} requests interleaved; direct p50 ${latency.direct.p50} / p99 ${latency.direct.p99} ms, gateway p50 ${latency.gateway.p50} / p99 ${latency.gateway.p99} ms`,
    )
  }
  if (latencyInProcess) {
    out.push(
      `proxy (gateway in the benchmark's own process, for reference): p50 overhead ${latencyInProcess.p50OverheadMs} ms, p99 overhead ${latencyInProcess.p99OverheadMs} ms`,
    )
  }
  if (promptLatency) {
    out.push(
      `prompt: POST /prompt of a ${promptLatency.nodes}-node workflow (${promptLatency.body_bytes} B), ${promptLatency.pairs} pairs interleaved; direct p50 ${promptLatency.direct.p50} / p99 ${promptLatency.direct.p99} ms, gateway p50 ${promptLatency.gateway.p50} / p99 ${promptLatency.gateway.p99} ms`,
    )
  }
  if (storage) {
    const m = storage.measuredAt
    out.push(
      `storage: ${storage.prompts} re-runs then ${storage.prompts} new workflows through the gateway; store ${m.repeat.bytes} B (${m.repeat.sessions} sessions) -> ${m.new.bytes} B (${m.new.sessions}) -> ${m.end.bytes} B (${m.end.sessions})`,
    )
  }
  if (verify) {
    out.push(
      `verify: ${verify.events} events (${verify.sessions} sessions, ${verify.store_bytes} B store) in ${verify.verify_ms} ms, RSS +${verify.verify_rss_growth_mb} MiB; paging alone: first page ${verify.paging.first_page_ms} ms, last ${verify.paging.last_page_ms} ms, ${verify.paging.pages} pages in ${verify.paging.total_ms} ms`,
    )
  }
  if (cliStart) {
    out.push(
      `cli: --help median ${cliStart.help_p50_ms} ms (max ${cliStart.help_max_ms}), sessions (${cliStart.store_sessions}-session SQLite store) median ${cliStart.sessions_p50_ms} ms (max ${cliStart.sessions_max_ms}) over ${cliStart.runs} runs; bare node median ${cliStart.bare_node_p50_ms} ms`,
    )
  }
  if (relayFlood) {
    const runs = (rs: readonly { framesPerSecond: number }[]): string =>
      rs.map((r) => r.framesPerSecond).join(', ')
    out.push(
      `ws relay, fast upstream: ${relayFlood.steps} progress frames per run, interleaved; direct ${runs(relayFlood.directRuns)}/s, gateway ${runs(relayFlood.gatewayRuns)}/s (medians ${relayFlood.directFramesPerSecond} / ${relayFlood.gatewayFramesPerSecond})`,
    )
  }
  if (relay) {
    out.push(
      `ws relay: ${relay.steps} progress frames per run; direct ${relay.direct.framesPerSecond}/s over ${relay.direct.spanMs} ms, gateway ${relay.gateway.framesPerSecond}/s over ${relay.gateway.spanMs} ms`,
    )
  }
  if (capture) {
    out.push(
      `capture: ${capture.replays} replays of ${capture.scenarios.length} scenarios (${capture.tapCallsPerReplay} tap calls each), ${capture.nodeRunsCommitted} node runs and ${capture.eventsCommitted} events in ${capture.elapsedMs} ms (${capture.eventsPerSecond} events/s)`,
    )
  }
  if (rss) {
    out.push(
      `rss: ${rss.promptsSucceeded}/${rss.clients} prompts succeeded in ${rss.elapsedMs} ms; idle ${rss.idleRssMb} MiB, max sampled ${rss.maxSampledRssMb} MiB, VmHWM ${rss.peakRssMb} MiB` +
        (recorded
          ? `; its store holds ${recorded.sessions} sessions (${recorded.success} success), ${recorded.node_runs} node runs`
          : ''),
    )
  }
  for (const [name, message] of Object.entries(failures))
    out.push(`FAILED ${name}: ${message.split('\n')[0]}`)
  console.log(out.join('\n'))

  const report: Record<string, unknown> = {
    ...Object.fromEntries(figures.map((f) => [f.key, f.value])),
    goals_met: Object.fromEntries(figures.map((f) => [f.key, f.value === null ? null : f.meets(f.value)])),
    // Where each figure was measured (store size), and why a null figure was not measured.
    measured_at: Object.fromEntries(figures.flatMap((f) => (f.at ? [[f.key, f.at]] : []))),
    null_reasons: Object.fromEntries(
      figures.flatMap((f) => (f.value !== null ? [] : [[f.key, f.reason ?? failureFor(f.key, failures)]])),
    ),
    started_at: startedAt,
    quick,
    machine,
    sim_speed: SIM_SPEED,
    build: build ? { rebuilt: build.built, tsc_problems: build.problems !== null } : null,
    details: {
      proxy_latency: latency,
      proxy_latency_in_process: latencyInProcess,
      prompt_latency: promptLatency,
      storage_per_session: storage,
      verify,
      cli_start: cliStart,
      ws_relay: relay,
      ws_relay_flood: relayFlood,
      capture,
      gateway_rss: rss ? { ...rss, recorded } : null,
    },
    failures,
  }
  if (args.out) {
    const path = resolve(process.cwd(), args.out)
    await writeFile(path, JSON.stringify(report, null, 2) + '\n')
    log(`wrote ${path}`)
  }
  return Object.keys(failures).length === 0 ? 0 : 1
}

main().then(
  (code) => {
    process.exitCode = code
    // Lingering keep-alive sockets or timers of a broken component must not keep the benchmark alive.
    setTimeout(() => process.exit(code), 2000).unref()
  },
  (err: unknown) => {
    console.error(err)
    process.exitCode = 1
  },
)
