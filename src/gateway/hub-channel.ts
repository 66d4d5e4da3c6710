/**
 * The socket hub's bookkeeping per namespaced client id: its upstream socket, its downstream sockets, the
 * prompts in flight under it, and what a reconnecting client must be told. Also the saving of the held ids.
 */
import type WebSocket from 'ws'
import type { Logger } from '../audit/report-error.js'
import { parseClientId } from './client-ids.js'
import type { UpstreamSocket } from './upstream-socket.js'

/** Where the gateway keeps the namespaced client ids it holds, to re-attach them after a restart. */
export interface ClientIdState {
  load(): Promise<string[]>
  save(ids: string[]): Promise<void>
}

/** The client's TCP stream under its WebSocket: corked while the hub relays one upstream read to it. */
export interface Wire {
  cork(): void
  uncork(): void
}

export interface Downstream {
  readonly ws: WebSocket
  /** Without it (tests' bare sockets) every frame is its own write. */
  readonly wire?: Wire
  /** Whether the hub holds `wire` corked until the current upstream read has been relayed. */
  corked?: boolean
  /** ComfyUI checks only the first text frame for feature flags. */
  first: boolean
  /** Whether that frame asked for `supports_preview_metadata` (type 4 previews). */
  previewMeta?: boolean
}

interface InflightPrompt {
  /** Hub sequence number when ComfyUI accepted it; null while its POST is unanswered. */
  answeredSeq: number | null
}

/** One namespaced client id and its upstream socket. */
export interface Channel {
  readonly id: string
  readonly kind: 'client' | 'noclient'
  /** The id as the client knows it (null for no-client ids). */
  readonly downstreamId: string | null
  /** The id inside JSON strings, and its replacement, for rewriting relayed frames. */
  readonly idInJson: string
  readonly downstreamInJson: string | null
  readonly socket: UpstreamSocket
  readonly downstreams: Set<Downstream>
  /** The newest downstream socket; the only one that gets events (older ones stay silent, as in ComfyUI). */
  active: Downstream | null
  readonly inflight: Map<string, InflightPrompt>
  /** A few finished prompts, for events that trail the end of a run. */
  readonly recent: string[]
  /** Display id of the node running for this id (ComfyUI's `last_node_id`), for the reconnect `executing`. */
  runningNode: string | null
  runningPrompt: string | null
  /** Restored from state: kept until the first reconciliation with ComfyUI's queue. */
  pinned: boolean
  idleTimer: NodeJS.Timeout | null
  closed: boolean
}

/**
 * Holds a downstream's wire corked until the current tick ends. One upstream read carries many frames (ws
 * emits them synchronously), and writing each on its own cost a third of the relay's CPU in `writev`;
 * corked, the frames a read relays to a client leave as one write. Order and bytes are unchanged.
 */
export class CorkedWrites {
  #corked: Downstream[] = []

  /** Corks `d`'s wire, if it has one and it is not corked yet; the next tick uncorks it. */
  hold(d: Downstream): void {
    const wire = d.wire
    if (!wire || d.corked === true) return
    wire.cork()
    d.corked = true
    this.#corked.push(d)
    if (this.#corked.length === 1) process.nextTick(this.#release)
  }

  readonly #release = (): void => {
    const corked = this.#corked
    this.#corked = []
    for (const d of corked) {
      d.corked = false
      d.wire!.uncork()
    }
  }
}

/** Finished prompts a channel remembers, for events that trail the end of a run. */
const RECENT_PROMPTS = 8

/** A fresh channel for upstream id `id` over `socket`. */
export function newChannel(id: string, socket: UpstreamSocket): Channel {
  const parsed = parseClientId(id)
  const downstreamId = parsed.kind === 'client' ? parsed.downstreamId : null
  return {
    id,
    kind: parsed.kind === 'noclient' ? 'noclient' : 'client',
    downstreamId,
    idInJson: JSON.stringify(id).slice(1, -1),
    downstreamInJson: downstreamId === null ? null : JSON.stringify(downstreamId).slice(1, -1),
    socket,
    downstreams: new Set(),
    active: null,
    inflight: new Map(),
    recent: [],
    runningNode: null,
    runningPrompt: null,
    pinned: false,
    idleTimer: null,
    closed: false,
  }
}

/** Moves `promptId` from in flight to recent; false when it was not in flight. */
export function settlePrompt(ch: Channel, promptId: string): boolean {
  if (!ch.inflight.delete(promptId)) return false
  ch.recent.push(promptId)
  if (ch.recent.length > RECENT_PROMPTS) ch.recent.shift()
  return true
}

/** True when nothing holds the channel's upstream socket open any more. */
export function isIdle(ch: Channel): boolean {
  return !ch.closed && !ch.pinned && ch.downstreams.size === 0 && ch.inflight.size === 0
}

/**
 * Saves the held ids, one save at a time: changes made while a save runs are saved right after it, so the
 * last save always holds the newest set.
 */
export class ClientIdSaver {
  readonly #state: ClientIdState | undefined
  readonly #logger: Logger
  readonly #ids: () => string[]
  #saving: Promise<void> | null = null
  #dirty = false

  constructor(state: ClientIdState | undefined, logger: Logger, ids: () => string[]) {
    this.#state = state
    this.#logger = logger
    this.#ids = ids
  }

  /** Schedules a save (nothing without a state). */
  save(): void {
    const state = this.#state
    if (!state) return
    this.#dirty = true
    if (this.#saving) return
    this.#saving = (async () => {
      while (this.#dirty) {
        this.#dirty = false
        try {
          await state.save(this.#ids())
        } catch (error) {
          this.#logger.warn('gateway: could not save client ids', { error: String(error) })
        }
      }
      this.#saving = null
    })()
  }

  /** Resolves once the save under way, if any, is done. */
  async settled(): Promise<void> {
    if (this.#saving) await this.#saving
  }
}

/** A text frame of `ch` as its downstream client reads it: the upstream id replaced by the client's own. */
export function downstreamText(ch: Channel, data: Buffer, text: string): Buffer | string {
  const to = ch.downstreamInJson
  return to !== null && text.includes(ch.idInJson) ? text.split(ch.idInJson).join(to) : data
}
