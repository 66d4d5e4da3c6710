/**
 * Benchmark (report only): `verify` over a generated SQLite store.
 *
 * Writes a history (test/helpers/history-generator.ts) through the store's own write path
 * (RuntimeStore.append: events, derived rows and rollups in one transaction per batch), then times
 * `verifyLedger` over it and, separately, one pass of event paging (`rawEvents`), noting how long the
 * first and the last pages took: paging that rescans the log shows as a last page far slower than the first.
 *
 * Usage: npx tsx bench/verify-throughput.ts [--sessions N=1500] [--out FILE]
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { verifyLedger } from '../src/ledger/verify-ledger.js'
import { generateKey } from '../src/ledger/signed-note.js'
import { createRuntimeStore } from '../src/store/runtime-store.js'
import { EVENT_PAGE_SIZE } from '../src/store/sql-common.js'
import { createSqliteDialect } from '../src/store/sqlite/sqlite-dialect.js'
import { generateHistory } from '../test/helpers/history-generator.js'
import { round } from './bench-kit.js'

const ORIGIN = 'comfy-audit/bench'

/** Options of {@link measureVerifyThroughput}. */
export interface VerifyThroughputOptions {
  /** Sessions generated (about 35 events each); default 1,500. */
  readonly sessions?: number
}

/** What {@link measureVerifyThroughput} measured. */
export interface VerifyThroughputResult {
  readonly sessions: number
  readonly events: number
  readonly store_bytes: number
  readonly write_seconds: number
  readonly verify_ms: number
  readonly events_per_second: number
  /** Events ÷ CPU seconds of the process during verify: steadier than wall time on a shared machine. */
  readonly events_per_cpu_second: number
  readonly verify_ok: boolean
  /** Peak RSS during verify minus the RSS before it, MiB. */
  readonly verify_rss_growth_mb: number
  /** Peak RSS of the process during verify (VmHWM after resetting it; where that fails, RSS at the end), MiB. */
  readonly verify_peak_rss_mb: number
  /** Paging alone: milliseconds of the first and of the last full page, and of the whole pass. */
  readonly paging: {
    readonly page_size: number
    readonly pages: number
    readonly first_page_ms: number
    readonly last_page_ms: number
    readonly total_ms: number
  }
}

/** Resets the process's peak RSS (Linux: `5` into /proc/self/clear_refs); false where that is not possible. */
async function resetPeakRss(): Promise<boolean> {
  try {
    await writeFile('/proc/self/clear_refs', '5')
    return true
  } catch {
    return false
  }
}

/** VmHWM of this process, bytes. */
async function peakRss(): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8')
  const kb = /^VmHWM:\s*(\d+) kB/m.exec(status)?.[1]
  return kb === undefined ? process.memoryUsage().rss : Number(kb) * 1024
}

/** Builds the store, verifies it, and pages through it once. */
export async function measureVerifyThroughput(
  options: VerifyThroughputOptions = {},
): Promise<VerifyThroughputResult> {
  const sessions = options.sessions ?? 1500
  const dir = await mkdtemp(join(tmpdir(), 'comfy-audit-bench-verify-'))
  const path = join(dir, 'audit.sqlite')
  const store = createRuntimeStore(createSqliteDialect({ path, synchronous: 'normal' }), { origin: ORIGIN })
  try {
    const t0 = performance.now()
    const history = await generateHistory(store, { seed: 5, sessions, batchEvents: 1000 })
    await store.flush()
    const writeSeconds = (performance.now() - t0) / 1000
    const storeBytes = (await stat(path)).size + (await stat(`${path}-wal`).catch(() => ({ size: 0 }))).size

    const pageTimes: number[] = []
    let inPage = 0
    let pageStart = performance.now()
    const pagingStart = pageStart
    for await (const row of store.rawEvents({ origin: ORIGIN })) {
      void row
      if (++inPage === EVENT_PAGE_SIZE) {
        const now = performance.now()
        pageTimes.push(now - pageStart)
        pageStart = now
        inPage = 0
      }
    }
    const pagingMs = performance.now() - pagingStart

    const key = generateKey(ORIGIN).verifierKey
    // The kernel's peak (VmHWM), reset first so that it is verify's and not the generator's: a timer
    // sampling RSS rarely gets a turn, since the SQLite pages resolve without giving the event loop one.
    const rssBefore = process.memoryUsage().rss
    const peakReset = await resetPeakRss()
    const cpu0 = process.cpuUsage()
    const v0 = performance.now()
    const report = await verifyLedger({ store, verifierKey: key, origin: ORIGIN })
    const verifyMs = performance.now() - v0
    const cpu = process.cpuUsage(cpu0)
    const rssMax = peakReset ? await peakRss() : Math.max(rssBefore, process.memoryUsage().rss)
    const events = report.origins.reduce((n, o) => n + o.events, 0)
    if (events !== history.events)
      throw new Error(`verify saw ${events} events, ${history.events} were written`)
    return {
      sessions: history.sessions,
      events,
      store_bytes: storeBytes,
      write_seconds: round(writeSeconds, 1),
      verify_ms: round(verifyMs, 0),
      events_per_second: Math.round(events / (verifyMs / 1000)),
      events_per_cpu_second: Math.round(events / ((cpu.user + cpu.system) / 1e6)),
      verify_ok: report.ok,
      verify_rss_growth_mb: round((rssMax - rssBefore) / 2 ** 20, 1),
      verify_peak_rss_mb: round(rssMax / 2 ** 20, 1),
      paging: {
        page_size: EVENT_PAGE_SIZE,
        pages: pageTimes.length,
        first_page_ms: round(pageTimes[0] ?? Number.NaN, 2),
        last_page_ms: round(pageTimes[pageTimes.length - 1] ?? Number.NaN, 2),
        total_ms: round(pagingMs, 0),
      },
    }
  } finally {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2)
  const flag = (name: string): string | undefined => {
    const i = args.indexOf(name)
    return i >= 0 ? args[i + 1] : undefined
  }
  const result = await measureVerifyThroughput({ sessions: Number(flag('--sessions') ?? 1500) })
  console.log(JSON.stringify(result, null, 2))
  const out = flag('--out')
  if (out) await writeFile(out, JSON.stringify(result, null, 2) + '\n')
}
