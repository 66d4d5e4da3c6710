/**
 * The runtime store's direct calls to the driver: queries, state, checkpoints, pruning and rebuilds. Each
 * waits for the closed check and init (`ready`); the writes among them take the write lock, and those that
 * must cover every acknowledged event (rebuild, prune) flush the append queue first. Appends themselves go
 * through the write path (write-queue.ts); runtime-store.ts puts the two together.
 */
import type { AnalysisRollupFilter, UsageRollupRow, WorkflowRollupRow } from './analysis-rollups.js'
import type { RollupFilter, RollupRow } from './rollups.js'
import type { AuditEvent, JsonValue, OutputRecord, SessionRecord } from '../audit/types.js'
import type {
  DerivedRows,
  EventFilter,
  NodeRunFilter,
  NodeRunRow,
  PruneRequest,
  RebuildOutcome,
  SessionCount,
  SessionFilter,
  StoreDriver,
  StoredCheckpoint,
  StoredEventRow,
} from './store.js'

export abstract class RuntimeStoreReads {
  abstract readonly origin: string
  protected abstract readonly driver: StoreDriver
  /** Rejects once the store is closed; otherwise opens it (once). */
  protected abstract ready(): Promise<void>
  /** Resolves once everything appended before the call is committed (or failed). */
  abstract flush(): Promise<void>
  /** Runs a write under the store's write lock. */
  protected abstract write<T>(fn: () => Promise<T>): Promise<T>
  protected abstract reportProblems(problems: readonly string[]): void

  async lastSeq(origin?: string): Promise<number> {
    await this.ready()
    return this.driver.lastSeq(origin ?? this.origin)
  }

  async origins(): Promise<string[]> {
    await this.ready()
    return this.driver.origins()
  }

  async sessionIds(origin?: string): Promise<string[]> {
    await this.ready()
    return this.driver.sessionIds(origin ?? this.origin)
  }

  async *events(filter: EventFilter = {}): AsyncGenerator<AuditEvent> {
    await this.ready()
    yield* this.driver.events(filter)
  }

  async *rawEvents(filter: EventFilter = {}): AsyncGenerator<StoredEventRow> {
    await this.ready()
    yield* this.driver.rawEvents(filter)
  }

  async sessions(filter: SessionFilter = {}): Promise<SessionRecord[]> {
    await this.ready()
    return this.driver.sessions(filter)
  }

  async session(sessionId: string, origin?: string): Promise<SessionRecord | undefined> {
    await this.ready()
    return this.driver.session(sessionId, origin)
  }

  async nodeRuns(filter: NodeRunFilter = {}): Promise<NodeRunRow[]> {
    await this.ready()
    return this.driver.nodeRuns(filter)
  }

  async rollups(filter: RollupFilter = {}): Promise<RollupRow[]> {
    await this.ready()
    return this.driver.rollups(filter)
  }

  async workflowRollups(filter: AnalysisRollupFilter = {}): Promise<WorkflowRollupRow[]> {
    await this.ready()
    return this.driver.workflowRollups(filter)
  }

  async usageRollups(filter: AnalysisRollupFilter = {}): Promise<UsageRollupRow[]> {
    await this.ready()
    return this.driver.usageRollups(filter)
  }

  async outputsBySha256(sha256: string): Promise<OutputRecord[]> {
    await this.ready()
    return this.driver.outputsBySha256(sha256)
  }

  async derivedRows(origin?: string): Promise<DerivedRows> {
    await this.ready()
    return this.driver.derivedRows(origin)
  }

  async sessionCounts(): Promise<SessionCount[]> {
    await this.ready()
    return this.driver.sessionCounts()
  }

  async rebuildDerived(origin?: string): Promise<RebuildOutcome> {
    await this.ready()
    // Appends queued before the rebuild go first, so the rebuilt tables cover everything acknowledged so far.
    await this.flush()
    const outcome = await this.write(() => this.driver.rebuildDerived(origin))
    this.reportProblems(outcome.problems)
    return outcome
  }

  async getState(key: string): Promise<JsonValue | undefined> {
    await this.ready()
    return this.driver.getState(key)
  }

  async setState(key: string, value: JsonValue): Promise<void> {
    await this.ready()
    await this.write(() => this.driver.setState(key, value))
  }

  async addCheckpoint(checkpoint: StoredCheckpoint): Promise<void> {
    await this.ready()
    await this.write(() => this.driver.addCheckpoint(checkpoint))
  }

  async checkpoints(origin?: string): Promise<StoredCheckpoint[]> {
    await this.ready()
    return this.driver.checkpoints(origin ?? this.origin)
  }

  async prunePayloads(request: PruneRequest): Promise<number> {
    await this.ready()
    await this.flush()
    return this.write(() => this.driver.prunePayloads(request))
  }
}
