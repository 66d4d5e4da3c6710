/**
 * When to reconcile and what to ask ComfyUI: closes sessions ComfyUI has finished or lost while the gateway did
 * not see it (a restart of either, a dropped socket) and records prompts that bypassed the gateway. Deciding
 * what each answer means is capture's (capture/reconcile.ts); this module only reads and schedules.
 */
import { reportError } from '../audit/report-error.js'
import type { Capture } from '../capture/capture.js'
import type { ComfyReader } from './comfy-reader.js'

/** What reconciliation needs of capture. */
type ReconcilingCapture = Pick<Capture, 'flush' | 'openSessions' | 'reconcile' | 'isInheritedSession'>

/** One reconciliation pass; `restarted`: ComfyUI (or the gateway) may have restarted since the last one. */
type Reconcile = (restarted: boolean) => Promise<void>

/**
 * Creates the pass. Capture knows which sessions a previous gateway process left open (inherited): the answer
 * ComfyUI still owed them went with that process, so one ComfyUI neither queued nor finished never will be
 * (issue 10 item 3: such prompts stayed queued for ever).
 */
export function createReconciler(deps: {
  readonly capture: ReconcilingCapture
  readonly comfy: ComfyReader
}): Reconcile {
  const { capture, comfy } = deps
  return async (restarted) => {
    // Open sessions first, then the queue, then history: a prompt that finishes in between is then in the history
    // we read (ComfyUI writes history before it leaves the queue), and one accepted after the queue was read is
    // left alone, so neither is wrongly called lost. The resumed sessions must be known first.
    await capture.flush()
    const candidates = new Set(capture.openSessions().map((o) => o.session_id))
    // Only sessions ComfyUI had already accepted may be called lost: it queues a prompt before answering 200, so
    // such a prompt is in the queue read next or in history. One whose 200 arrives after the queue read is in
    // neither without being lost (issue 10 item 3: under load this closed dozens of running prompts as lost).
    // History still closes the others.
    const mayBeLost = new Set(
      capture
        .openSessions()
        .filter((o) => o.accepted || capture.isInheritedSession(o.session_id))
        .map((o) => o.session_id),
    )
    const queue = await comfy.getJson('/queue', 10_000)
    const history = await comfy.getJson('/history?max_items=1000', 30_000)
    if (history === null || typeof history !== 'object' || Array.isArray(history)) return
    // Open sessions older than the window read above: ask for each one, so none is called lost by mistake.
    const queued = JSON.stringify(queue ?? '')
    for (const open of capture.openSessions()) {
      if (!candidates.has(open.session_id)) continue
      if (open.session_id in history || queued.includes(open.session_id)) continue
      const one = await comfy.getJson(`/history/${encodeURIComponent(open.session_id)}`, 10_000)
      if (one === null) return // ComfyUI did not answer: decide nothing this time
      if (typeof one === 'object' && !Array.isArray(one) && one[open.session_id] !== undefined) {
        history[open.session_id] = one[open.session_id]!
      }
    }
    capture.reconcile({
      history,
      queue,
      sessionIds: candidates,
      mayBeLost,
      comfyRestarted: restarted,
      // Capture's index knows every id the log ever held, so no pruned or erased session comes back.
      detectBypass: true,
    })
  }
}

/** What the schedule needs to know of ComfyUI's reachability (the gateway's upstream socket). */
interface UpstreamStatus {
  readonly upstreamHealthy: boolean
  on(event: 'upstream', listener: (e: { healthy: boolean }) => void): () => void
}

/** Options of {@link scheduleReconciliation}. */
interface ReconciliationSchedule {
  readonly reconcile: Reconcile
  readonly upstream: UpstreamStatus
  /** Period of the sweep, ms; 0 turns the timer off (passes at start and after a reconnect still run). */
  readonly sweepIntervalMillis: number
  /**
   * Called when ComfyUI goes away and when it comes back: it may come back as another version, on other
   * devices, with other node packs. Must not throw.
   */
  readonly onMaybeRestarted?: () => void
}

/**
 * Runs a pass now (the gateway may have restarted), after ComfyUI comes back from being unreachable (it may
 * have restarted and lost its queue and history), and every sweep period. Returns a function that stops it.
 */
export function scheduleReconciliation(schedule: ReconciliationSchedule): () => void {
  const { reconcile, upstream } = schedule
  reconcile(true).catch((err: unknown) => reportError(err, 'reconcile at start'))
  let upstreamWasDown = !upstream.upstreamHealthy
  const off = upstream.on('upstream', ({ healthy }) => {
    if (!healthy || upstreamWasDown) schedule.onMaybeRestarted?.()
    if (healthy && upstreamWasDown)
      reconcile(true).catch((err: unknown) => reportError(err, 'reconcile after reconnect'))
    upstreamWasDown = !healthy
  })
  const every = schedule.sweepIntervalMillis
  const sweep =
    every > 0
      ? setInterval(() => reconcile(false).catch((err: unknown) => reportError(err, 'reconcile')), every)
      : null
  sweep?.unref()
  return () => {
    if (sweep) clearInterval(sweep)
    off()
  }
}

/**
 * Lets the first connection to ComfyUI settle, so a client connecting right after start is not refused while
 * the gateway's own observer socket is still opening. A ComfyUI that is down does not hold start-up longer
 * than `maxWaitMillis`.
 */
export async function settleUpstream(upstream: UpstreamStatus, maxWaitMillis: number): Promise<void> {
  if (upstream.upstreamHealthy) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, maxWaitMillis)
    const off = upstream.on('upstream', ({ healthy }) => healthy && done())
    function done(): void {
      clearTimeout(timer)
      off()
      resolve()
    }
  })
}
