/**
 * The mapping rules of a real Elasticsearch 8 cluster, written down for tests, and a receiver that applies
 * them: `PUT _index_template/<name>` stores a template, `POST _bulk` creates an index on first use (from the
 * matching template of highest priority, else empty) and indexes each `create` with these rules.
 *
 * Rules (Elasticsearch defaults, as documented for 8.x mappings):
 * - Dynamic mapping (`dynamic: true`, inherited by inner objects) maps a new field on first sight: a JSON
 *   string becomes `date` when it looks like `strict_date_optional_time` (date_detection), else `text` with a
 *   `keyword` sub-field (two fields); an integer becomes `long`, another number `float`, a boolean `boolean`,
 *   an object `object`; an array takes the type of its first non-null element; null and [] map nothing.
 *   `dynamic: false` keeps unknown fields in `_source` unmapped; `strict` refuses them.
 * - A value that does not fit the field's type is refused for good (400 `mapper_parsing_exception`):
 *   a concrete value for an object, an object for a leaf, a non-numeric string (or a number out of range) for
 *   `long`/`integer`/`float`/`double` (numeric strings and fractions are coerced), a non-date string for
 *   `date`, anything but true/false/"true"/"false" for `boolean`. `keyword`/`text` take strings, numbers and
 *   booleans. An object with `enabled: false` is not parsed at all (any value).
 * - Field names: an empty name (or an empty part between dots) is refused; dots expand into objects.
 * - `index.mapping.total_fields.limit` (1000: every object, leaf and sub-field counts) and
 *   `index.mapping.depth.limit` (20 object levels): a document whose new fields pass them is refused (400
 *   `illegal_argument_exception`).
 * - A refused document adds nothing to the mapping.
 *
 * Simplifications, each on the side of accepting less: `flattened` takes only objects (or arrays of them) and
 * refuses leaves deeper than its `depth_limit`; an integer beyond the range of `long` is mapped `float`.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

type Dynamic = true | false | 'strict'
type LeafType = 'keyword' | 'text' | 'long' | 'integer' | 'float' | 'double' | 'date' | 'boolean'

interface ObjectMapping {
  kind: 'object'
  dynamic: Dynamic | undefined
  enabled: boolean
  properties: Map<string, Mapping>
}
interface LeafMapping {
  kind: 'leaf'
  type: LeafType
  /** Sub-fields (`fields`), counted against the total. */
  subFields: number
}
interface FlattenedMapping {
  kind: 'flattened'
  depthLimit: number
}
type Mapping = ObjectMapping | LeafMapping | FlattenedMapping

const LEAF_TYPES = new Set<string>([
  'keyword',
  'text',
  'long',
  'integer',
  'float',
  'double',
  'date',
  'boolean',
])
const DATE = /^\d{4}-\d{2}-\d{2}(T\d{2}(:\d{2}(:\d{2}([.,]\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$/
const NUMERIC = /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/
const LONG_MAX = 2 ** 63

/** A refusal, as Elasticsearch reports a per-item error. */
export interface MappingError {
  readonly type:
    'mapper_parsing_exception' | 'illegal_argument_exception' | 'strict_dynamic_mapping_exception'
  readonly reason: string
}

class Refused extends Error {
  constructor(readonly error: MappingError) {
    super(error.reason)
  }
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

function parseMapping(json: Record<string, unknown>, path: string): Mapping {
  const type = json.type as string | undefined
  if (type === undefined || type === 'object') {
    const properties = new Map<string, Mapping>()
    for (const [name, child] of Object.entries((json.properties as Record<string, unknown>) ?? {})) {
      if (!isObject(child)) throw new Error(`mapping ${path}${name}: not an object`)
      properties.set(name, parseMapping(child, `${path}${name}.`))
    }
    const dynamic = json.dynamic as Dynamic | 'true' | 'false' | undefined
    return {
      kind: 'object',
      dynamic: dynamic === 'true' ? true : dynamic === 'false' ? false : dynamic,
      enabled: json.enabled !== false,
      properties,
    }
  }
  if (type === 'flattened') {
    return { kind: 'flattened', depthLimit: typeof json.depth_limit === 'number' ? json.depth_limit : 20 }
  }
  if (!LEAF_TYPES.has(type)) throw new Error(`mapping ${path}: type ${type} is not modelled by this checker`)
  return {
    kind: 'leaf',
    type: type as LeafType,
    subFields: isObject(json.fields) ? Object.keys(json.fields).length : 0,
  }
}

function clone(m: Mapping): Mapping {
  if (m.kind !== 'object') return { ...m }
  return { ...m, properties: new Map([...m.properties].map(([k, v]) => [k, clone(v)])) }
}

function count(m: Mapping): number {
  if (m.kind === 'leaf') return 1 + m.subFields
  if (m.kind === 'flattened') return 1
  let n = 1
  for (const child of m.properties.values()) n += count(child)
  return n
}

/** One index: its mapping and the rules above. */
export class CheckedIndex {
  #root: ObjectMapping
  readonly #totalFieldsLimit: number
  readonly #depthLimit: number
  readonly ids = new Set<string>()

  constructor(mappings: Record<string, unknown> = {}, settings: Record<string, unknown> = {}) {
    const root = parseMapping({ ...mappings, type: 'object' }, '')
    if (root.kind !== 'object') throw new Error('root mapping must be an object')
    if (root.dynamic === undefined) root.dynamic = true
    this.#root = root
    this.#totalFieldsLimit = Number(settings['index.mapping.total_fields.limit'] ?? 1000)
    this.#depthLimit = Number(settings['index.mapping.depth.limit'] ?? 20)
  }

  /** Fields mapped now (the root excluded). */
  fieldCount(): number {
    return count(this.#root) - 1
  }

  /** The mapping of a dotted path, for assertions (`undefined` when unmapped). */
  mappingOf(path: string): { kind: string; type?: string; enabled?: boolean } | undefined {
    let m: Mapping | undefined = this.#root
    for (const part of path.split('.')) m = m?.kind === 'object' ? m.properties.get(part) : undefined
    if (!m) return undefined
    return m.kind === 'leaf'
      ? { kind: 'leaf', type: m.type }
      : m.kind === 'object'
        ? { kind: 'object', enabled: m.enabled }
        : { kind: 'flattened' }
  }

  /** Indexes one document: null when accepted, else why it was refused (the mapping is then unchanged). */
  index(doc: unknown): MappingError | null {
    if (!isObject(doc)) return { type: 'mapper_parsing_exception', reason: 'failed to parse: not an object' }
    const staged = clone(this.#root) as ObjectMapping
    try {
      this.#object(staged, doc, '', 0, true)
      const total = count(staged) - 1
      if (total > this.#totalFieldsLimit) {
        throw new Refused({
          type: 'illegal_argument_exception',
          reason: `Limit of total fields [${this.#totalFieldsLimit}] has been exceeded while adding new fields [${total - this.fieldCount()}]`,
        })
      }
    } catch (error) {
      if (error instanceof Refused) return error.error
      throw error
    }
    this.#root = staged
    return null
  }

  #object(
    m: ObjectMapping,
    value: Record<string, unknown>,
    path: string,
    depth: number,
    inheritedDynamic: Dynamic,
  ): void {
    if (!m.enabled) return
    const dynamic = m.dynamic ?? inheritedDynamic
    fields: for (const [rawName, child] of Object.entries(value)) {
      const parts = rawName.split('.')
      if (parts.some((p) => p.trim() === '')) {
        throw new Refused({
          type: 'mapper_parsing_exception',
          reason: `field name cannot contain only whitespace or be empty: ['${path}${rawName}']`,
        })
      }
      // Dots expand into objects: {"a.b": 1} is {"a": {"b": 1}}.
      let target = m
      let targetDynamic = dynamic
      let targetPath = path
      let targetDepth = depth
      for (const part of parts.slice(0, -1)) {
        let next = target.properties.get(part)
        if (next === undefined) {
          if (targetDynamic === false) continue fields
          next = this.#newMapping({}, `${targetPath}${part}`, targetDynamic, targetDepth + 1)
          target.properties.set(part, next)
        }
        if (next.kind !== 'object') this.#concrete(`${targetPath}${part}`, next)
        target = next as ObjectMapping
        targetDynamic = target.dynamic ?? targetDynamic
        targetPath = `${targetPath}${part}.`
        targetDepth++
        if (!target.enabled) continue fields
      }
      this.#field(target, parts[parts.length - 1]!, child, targetPath, targetDepth, targetDynamic)
    }
  }

  #concrete(path: string, m: Mapping): never {
    throw new Refused({
      type: 'mapper_parsing_exception',
      reason: `object mapping for [${path}] tried to parse field as object, but found a concrete value (${m.kind})`,
    })
  }

  #field(
    parent: ObjectMapping,
    name: string,
    value: unknown,
    path: string,
    depth: number,
    dynamic: Dynamic,
  ): void {
    const full = `${path}${name}`
    let m = parent.properties.get(name)
    if (m === undefined) {
      const sample = firstValue(value)
      if (sample === undefined) return
      if (dynamic === false) return
      if (dynamic === 'strict') {
        throw new Refused({
          type: 'strict_dynamic_mapping_exception',
          reason: `mapping set to strict, dynamic introduction of [${name}] within [${path || '_doc'}] is not allowed`,
        })
      }
      m = this.#newMapping(sample, full, dynamic, depth + 1)
      parent.properties.set(name, m)
    }
    this.#value(m, value, full, depth, dynamic)
  }

  #newMapping(sample: unknown, path: string, dynamic: Dynamic, depth: number): Mapping {
    if (isObject(sample)) {
      if (depth > this.#depthLimit) {
        throw new Refused({
          type: 'illegal_argument_exception',
          reason: `Limit of mapping depth [${this.#depthLimit}] has been exceeded due to object field [${path}]`,
        })
      }
      return { kind: 'object', dynamic: undefined, enabled: true, properties: new Map() }
    }
    if (typeof sample === 'string') {
      return DATE.test(sample) && !Number.isNaN(Date.parse(sample))
        ? { kind: 'leaf', type: 'date', subFields: 0 }
        : { kind: 'leaf', type: 'text', subFields: 1 }
    }
    if (typeof sample === 'boolean') return { kind: 'leaf', type: 'boolean', subFields: 0 }
    if (typeof sample === 'number') {
      return Number.isInteger(sample) && Math.abs(sample) < LONG_MAX
        ? { kind: 'leaf', type: 'long', subFields: 0 }
        : { kind: 'leaf', type: 'float', subFields: 0 }
    }
    throw new Error(`${path}: unexpected JSON value ${String(sample)}`)
  }

  #value(m: Mapping, value: unknown, path: string, depth: number, dynamic: Dynamic): void {
    if (value === null) return
    if (Array.isArray(value)) {
      for (const item of value) this.#value(m, item, path, depth, dynamic)
      return
    }
    if (m.kind === 'object') {
      if (!m.enabled) return
      if (!isObject(value)) this.#concrete(path, m)
      this.#object(m, value, `${path}.`, depth + 1, dynamic)
      return
    }
    if (m.kind === 'flattened') {
      if (!isObject(value)) {
        throw new Refused({
          type: 'mapper_parsing_exception',
          reason: `failed to parse field [${path}] of type [flattened]: expected an object`,
        })
      }
      const deepest = depthOf(value)
      if (deepest > m.depthLimit) {
        throw new Refused({
          type: 'mapper_parsing_exception',
          reason: `the provided [flattened] field [${path}] exceeds the maximum depth limit of [${m.depthLimit}]`,
        })
      }
      return
    }
    if (!fits(m.type, value)) {
      throw new Refused({
        type: 'mapper_parsing_exception',
        reason: `failed to parse field [${path}] of type [${m.type}]: ${JSON.stringify(value).slice(0, 80)}`,
      })
    }
  }
}

function firstValue(value: unknown): unknown {
  if (!Array.isArray(value)) return value === null ? undefined : value
  for (const item of value) {
    const v = firstValue(item)
    if (v !== undefined) return v
  }
  return undefined
}

function depthOf(value: unknown): number {
  if (Array.isArray(value)) return Math.max(0, ...value.map(depthOf))
  if (!isObject(value)) return 0
  return 1 + Math.max(0, ...Object.values(value).map(depthOf))
}

function fits(type: LeafType, value: unknown): boolean {
  if (isObject(value)) return false
  switch (type) {
    case 'keyword':
    case 'text':
      return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
    case 'long':
    case 'integer': {
      const n =
        typeof value === 'number'
          ? value
          : typeof value === 'string' && NUMERIC.test(value)
            ? Number(value)
            : NaN
      const max = type === 'long' ? LONG_MAX : 2 ** 31
      return Number.isFinite(n) && Math.trunc(n) < max && Math.trunc(n) >= -max
    }
    case 'float':
    case 'double':
      return typeof value === 'number' || (typeof value === 'string' && NUMERIC.test(value))
    case 'date':
      return (
        (typeof value === 'number' && Number.isInteger(value)) ||
        (typeof value === 'string' && DATE.test(value) && !Number.isNaN(Date.parse(value)))
      )
    case 'boolean':
      return value === true || value === false || value === 'true' || value === 'false'
  }
}

interface StoredTemplate {
  readonly patterns: readonly string[]
  readonly priority: number
  readonly mappings: Record<string, unknown>
  readonly settings: Record<string, unknown>
}

/** A refused document as the receiver saw it. */
export interface Refusal {
  readonly index: string
  readonly id: string
  readonly error: MappingError
}

/** The receiver: a real HTTP server on 127.0.0.1 and a free port. */
export interface CheckedCluster {
  readonly url: string
  readonly indices: Map<string, CheckedIndex>
  readonly templates: Map<string, StoredTemplate>
  readonly accepted: string[]
  readonly refused: Refusal[]
  close(): Promise<void>
}

function matches(pattern: string, name: string): boolean {
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  )
  return re.test(name)
}

/** Starts a {@link CheckedCluster}. */
export async function startCheckedCluster(): Promise<CheckedCluster> {
  const indices = new Map<string, CheckedIndex>()
  const templates = new Map<string, StoredTemplate>()
  const accepted: string[] = []
  const refused: Refusal[] = []
  const indexFor = (name: string): CheckedIndex => {
    let index = indices.get(name)
    if (!index) {
      const template = [...templates.values()]
        .filter((t) => t.patterns.some((p) => matches(p, name)))
        .sort((a, b) => b.priority - a.priority)[0]
      index = new CheckedIndex(template?.mappings, template?.settings)
      indices.set(name, index)
    }
    return index
  }
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const answer = (status: number, json: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(json))
      }
      const url = new URL(req.url ?? '/', 'http://localhost')
      const template = /^\/_index_template\/([^/]+)$/.exec(url.pathname)
      if (req.method === 'PUT' && template) {
        const t = JSON.parse(body) as {
          index_patterns: string[]
          priority?: number
          template?: { mappings?: Record<string, unknown>; settings?: Record<string, unknown> }
        }
        // Parsing the mapping now refuses a template the checker cannot model, as a cluster refuses a bad one.
        new CheckedIndex(t.template?.mappings, t.template?.settings)
        templates.set(decodeURIComponent(template[1]!), {
          patterns: t.index_patterns,
          priority: t.priority ?? 0,
          mappings: t.template?.mappings ?? {},
          settings: t.template?.settings ?? {},
        })
        return answer(200, { acknowledged: true })
      }
      if (req.method === 'POST' && url.pathname === '/_bulk') {
        if (!body.endsWith('\n')) return answer(400, { error: { type: 'illegal_argument_exception' } })
        const lines = body.slice(0, -1).split('\n')
        const items: unknown[] = []
        for (let i = 0; i < lines.length; i += 2) {
          const action = (JSON.parse(lines[i]!) as { create: { _index: string; _id: string } }).create
          const doc = JSON.parse(lines[i + 1]!) as unknown
          const index = indexFor(action._index)
          if (index.ids.has(action._id)) {
            items.push({ create: { _index: action._index, _id: action._id, status: 409 } })
            continue
          }
          const error = index.index(doc)
          if (error) {
            refused.push({ index: action._index, id: action._id, error })
            items.push({ create: { _index: action._index, _id: action._id, status: 400, error } })
          } else {
            index.ids.add(action._id)
            accepted.push(action._id)
            items.push({ create: { _index: action._index, _id: action._id, status: 201 } })
          }
        }
        return answer(200, {
          errors: items.some((it) => (it as { create: { status: number } }).create.status >= 300),
          items,
        })
      }
      answer(404, { error: `no route ${req.method} ${url.pathname}` })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    indices,
    templates,
    accepted,
    refused,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
