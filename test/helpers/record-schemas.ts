/**
 * The record format's JSON Schemas (schemas/*.schema.json, draft 2020-12), compiled with Ajv for tests that
 * check what comfy-audit exports and ships.
 */
import { readFileSync } from 'node:fs'
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'

/** The record types with a schema, by file name. */
export const RECORD_SCHEMAS = ['session', 'node-run', 'action', 'output'] as const
export type RecordSchema = (typeof RECORD_SCHEMAS)[number]

const ROOT = new URL('../../schemas/', import.meta.url)

let compiled: Map<RecordSchema, ValidateFunction> | undefined

function validators(): Map<RecordSchema, ValidateFunction> {
  if (compiled) return compiled
  // strict: an unknown keyword or a malformed schema is an error, so the shipped files stay valid schemas.
  const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true })
  addFormats.default(ajv)
  compiled = new Map(
    RECORD_SCHEMAS.map((name) => {
      const schema = JSON.parse(readFileSync(new URL(`${name}.schema.json`, ROOT), 'utf8')) as object
      return [name, ajv.compile(schema)]
    }),
  )
  return compiled
}

/** The schema errors of `value` as `record type: /path message` lines; empty when it is valid. */
export function schemaErrors(name: RecordSchema, value: unknown): string[] {
  const validate = validators().get(name)!
  if (validate(value)) return []
  return (validate.errors ?? []).map(
    (e: ErrorObject) => `${name}: ${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`,
  )
}

/** The schema a sink record is checked against, by its `record_type`. */
export function schemaOfSinkRecord(record: { record_type?: unknown }): RecordSchema {
  switch (record.record_type) {
    case 'node_run':
      return 'node-run'
    case 'action':
      return 'action'
    case 'session':
      return 'session'
    default:
      throw new Error(`not a sink record: record_type ${JSON.stringify(record.record_type)}`)
  }
}
