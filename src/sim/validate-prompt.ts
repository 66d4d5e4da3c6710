/**
 * Prompt validation as ComfyUI 0.8's `execution.validate_prompt` / `validate_inputs` does it: same
 * error types, messages, `node_errors` shapes and the in-place coercion of INT/FLOAT/STRING/BOOLEAN
 * constants (the stored prompt is the coerced one). Python exceptions that would make aiohttp answer
 * 500 come back as `crash`.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { Catalogue } from './catalogue.js'
import type { DataDir } from './data-dir.js'
import { PyFloat, isPyObject } from './py-json.js'
import type { PyDict, PyObject, PyValue } from './py-json.js'
import { PyError, pyEquals, pyFloat, pyInt, pyRepr, pyStr, pyTruthy } from './py-repr.js'

type ValidationOutcome =
  | { kind: 'ok'; outputs: string[]; nodeErrors: PyDict }
  | { kind: 'refused'; error: PyObject; nodeErrors: PyDict }
  | { kind: 'crash'; reason: string }

type Reason = PyObject
type Validated = Map<string, [boolean, Reason[]]>

/** `folder_paths.annotated_filepath` + exists check (LoadImage's VALIDATE_INPUTS). */
export function annotatedPath(dir: DataDir, name: string, defaultDir: string): string {
  if (name.endsWith('[output]')) return join(dir.output, name.slice(0, -9))
  if (name.endsWith('[input]')) return join(dir.input, name.slice(0, -8))
  if (name.endsWith('[temp]')) return join(dir.temp, name.slice(0, -7))
  return join(defaultDir, name)
}

// Classes with a VALIDATE_INPUTS(image) that checks the input file exists.
const IMAGE_FILE_VALIDATORS = new Set(['LoadImage', 'LoadImageMask', 'LoadImageOutput'])

function lookupInput(
  def: PyObject,
  name: string,
): { type: PyValue; category: string; extra: PyObject } | undefined {
  const input = isPyObject(def.input) ? def.input : {}
  for (const category of ['required', 'optional', 'hidden']) {
    const group = input[category]
    if (isPyObject(group) && Object.hasOwn(group, name)) {
      const spec = group[name]
      if (Array.isArray(spec)) {
        return {
          type: spec[0] ?? null,
          category,
          extra: spec.length > 1 && isPyObject(spec[1]) ? spec[1] : {},
        }
      }
      return { type: spec ?? null, category, extra: {} }
    }
  }
  return undefined
}

function typeMatches(received: PyValue, input: PyValue): boolean {
  if (received === input) return true
  if (received === '*' || input === '*') return true
  if (received === 'COMFY_MATCHTYPE_V3' || input === 'COMFY_MATCHTYPE_V3') return true
  if (Array.isArray(received) && input === 'COMBO') return true
  if (typeof received !== 'string' || typeof input !== 'string') return false
  const r = new Set(received.split(',').map((t) => t.trim()))
  const i = new Set(input.split(',').map((t) => t.trim()))
  if (r.has('*') || i.has('*')) return true
  for (const t of r) if (i.has(t)) return true
  return false
}

function compare(a: PyValue, b: PyValue): number | undefined {
  const n = (x: PyValue): number | undefined =>
    typeof x === 'number'
      ? x
      : x instanceof PyFloat
        ? x.value
        : typeof x === 'bigint'
          ? Number(x)
          : typeof x === 'boolean'
            ? Number(x)
            : undefined
  const x = n(a)
  const y = n(b)
  if (x === undefined || y === undefined) {
    if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0
    throw new PyError('TypeError', `'<' not supported between instances`)
  }
  if (typeof a === 'bigint' && typeof b !== 'bigint')
    return a < BigInt(Math.trunc(y)) ? -1 : a > BigInt(Math.ceil(y)) ? 1 : 0
  return x < y ? -1 : x > y ? 1 : 0
}

/** Validates a parsed `prompt` (mutating it: coercion, `__value__` unwrapping). */
export async function validatePrompt(
  prompt: PyValue,
  partialTargets: PyValue | undefined,
  catalogue: Catalogue,
  dir: DataDir,
): Promise<ValidationOutcome> {
  // Python iterates a str/list prompt and then indexes it: TypeError for anything but a dict.
  if (typeof prompt === 'string' || Array.isArray(prompt)) {
    if (prompt.length > 0) return { kind: 'crash', reason: 'TypeError: string indices must be integers' }
  } else if (!isPyObject(prompt)) {
    return { kind: 'crash', reason: `TypeError: '${pyRepr(prompt)}' object is not iterable` }
  }
  const graph: PyObject = isPyObject(prompt) ? prompt : {}
  const targets = partialTargets === undefined || partialTargets === null ? undefined : partialTargets
  const outputs: string[] = []
  for (const x of Object.keys(graph)) {
    const node = graph[x]
    let hasClassType: boolean
    if (isPyObject(node)) hasClassType = Object.hasOwn(node, 'class_type')
    else if (typeof node === 'string') hasClassType = node.includes('class_type')
    else if (Array.isArray(node)) hasClassType = node.some((v) => v === 'class_type')
    else return { kind: 'crash', reason: `TypeError: argument of type is not iterable` }
    if (!hasClassType) {
      return refusedEarly('Cannot execute because a node is missing the class_type property.', x)
    }
    if (!isPyObject(node)) return { kind: 'crash', reason: 'TypeError: indices must be integers' }
    const ct = node.class_type
    if (Array.isArray(ct) || isPyObject(ct)) return { kind: 'crash', reason: 'TypeError: unhashable type' }
    if (typeof ct !== 'string' || !catalogue.has(ct)) {
      return refusedEarly(`Cannot execute because node ${pyStr(ct)} does not exist.`, x)
    }
    if (catalogue.isOutput(ct)) {
      let include = targets === undefined
      if (!include) {
        if (Array.isArray(targets)) include = targets.some((t) => pyEquals(t, x))
        else if (typeof targets === 'string') include = targets.includes(x)
        else if (isPyObject(targets)) include = Object.hasOwn(targets, x)
        else return { kind: 'crash', reason: 'TypeError: argument of type is not iterable' }
      }
      if (include && !outputs.includes(x)) outputs.push(x)
    }
  }
  if (outputs.length === 0) {
    return {
      kind: 'refused',
      error: { type: 'prompt_no_outputs', message: 'Prompt has no outputs', details: '', extra_info: {} },
      nodeErrors: new Map(),
    }
  }

  const defs = new Map<string, PyObject>()
  const defOf = async (classType: string): Promise<PyObject> => {
    let d = defs.get(classType)
    if (!d) {
      d = (await catalogue.node(classType)) ?? {}
      defs.set(classType, d)
    }
    return d
  }
  const nodeOf = (id: string): PyObject => {
    if (!Object.hasOwn(graph, id)) throw new PyError('KeyError', pyRepr(id))
    const n = graph[id]
    if (!isPyObject(n)) throw new PyError('TypeError', "string indices must be integers, not 'str'")
    return n
  }

  const validated: Validated = new Map()
  const validateInputs = async (id: string): Promise<[boolean, Reason[]]> => {
    const seen = validated.get(id)
    if (seen) return seen
    const node = nodeOf(id)
    if (!Object.hasOwn(node, 'inputs')) throw new PyError('KeyError', "'inputs'")
    const inputs = node.inputs
    if (!isPyObject(inputs)) throw new PyError('TypeError', 'inputs is not a dict')
    const classType = node.class_type as string
    const def = await defOf(classType)
    const validatorInputs = IMAGE_FILE_VALIDATORS.has(classType) ? ['image'] : []
    const errors: Reason[] = []
    let valid = true
    const declared = isPyObject(def.input) ? def.input : {}
    const names: string[] = []
    for (const cat of ['required', 'optional']) {
      const g = declared[cat]
      if (isPyObject(g)) for (const n of Object.keys(g)) if (!names.includes(n)) names.push(n)
    }
    for (const x of names) {
      const info = lookupInput(def, x)!
      const config: PyValue = [info.type, info.extra]
      if (!Object.hasOwn(inputs, x)) {
        if (info.category === 'required') {
          errors.push({
            type: 'required_input_missing',
            message: 'Required input is missing',
            details: x,
            extra_info: { input_name: x },
          })
        }
        continue
      }
      let val = inputs[x]!
      if (Array.isArray(val)) {
        if (val.length !== 2) {
          errors.push({
            type: 'bad_linked_input',
            message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
            details: x,
            extra_info: { input_name: x, input_config: config, received_value: val },
          })
          continue
        }
        const from = val[0]
        if (typeof from !== 'string') {
          if (Array.isArray(from) || isPyObject(from))
            throw new PyError('TypeError', "unhashable type: 'list'")
          throw new PyError('KeyError', pyRepr(from))
        }
        const fromNode = nodeOf(from)
        const returns = catalogue.returnTypes(fromNode.class_type as string)
        const slot = val[1]
        if (typeof slot !== 'number' || !Number.isInteger(slot)) {
          throw new PyError(
            'TypeError',
            'tuple indices must be integers or slices, not ' + (typeof slot === 'string' ? 'str' : 'float'),
          )
        }
        const idx = slot < 0 ? returns.length + slot : slot
        if (idx < 0 || idx >= returns.length) throw new PyError('IndexError', 'tuple index out of range')
        const received = returns[idx]!
        if (!typeMatches(received, info.type)) {
          errors.push({
            type: 'return_type_mismatch',
            message: 'Return type mismatch between linked nodes',
            details: `${x}, received_type(${pyStr(received)}) mismatch input_type(${pyStr(info.type)})`,
            extra_info: { input_name: x, input_config: config, received_type: received, linked_node: val },
          })
          continue
        }
        try {
          const r = await validateInputs(from)
          if (!r[0]) {
            valid = false
            continue
          }
        } catch (ex) {
          valid = false
          const e = ex instanceof PyError ? ex : new PyError('Exception', String(ex))
          validated.set(from, [
            false,
            [
              {
                type: 'exception_during_inner_validation',
                message: 'Exception when validating inner node',
                details: e.message,
                extra_info: {
                  input_name: x,
                  input_config: config,
                  exception_message: e.message,
                  exception_type: e.pyType,
                  traceback: [],
                  linked_node: val,
                },
              },
            ],
          ])
          continue
        }
        continue
      }
      try {
        if (isPyObject(val) && Object.hasOwn(val, '__value__')) {
          val = val.__value__!
          inputs[x] = val
        }
        if (info.type === 'INT') {
          val = pyInt(val)
          inputs[x] = val
        }
        if (info.type === 'FLOAT') {
          val = pyFloat(val)
          inputs[x] = val
        }
        if (info.type === 'STRING') {
          val = pyStr(val)
          inputs[x] = val
        }
        if (info.type === 'BOOLEAN') {
          val = pyTruthy(val)
          inputs[x] = val
        }
      } catch (ex) {
        const msg = ex instanceof Error ? ex.message : String(ex)
        errors.push({
          type: 'invalid_input_type',
          message: `Failed to convert an input value to a ${pyStr(info.type)} value`,
          details: `${x}, ${pyStr(val)}, ${msg}`,
          extra_info: { input_name: x, input_config: config, received_value: val, exception_message: msg },
        })
        continue
      }
      if (!validatorInputs.includes(x)) {
        const min = info.extra.min
        const max = info.extra.max
        if (min !== undefined && compare(val, min)! < 0) {
          errors.push({
            type: 'value_smaller_than_min',
            message: `Value ${pyStr(val)} smaller than min of ${pyStr(min)}`,
            details: x,
            extra_info: { input_name: x, input_config: config, received_value: val },
          })
          continue
        }
        if (max !== undefined && compare(val, max)! > 0) {
          errors.push({
            type: 'value_bigger_than_max',
            message: `Value ${pyStr(val)} bigger than max of ${pyStr(max)}`,
            details: x,
            extra_info: { input_name: x, input_config: config, received_value: val },
          })
          continue
        }
        if (Array.isArray(info.type) || info.type === 'COMBO') {
          const options: PyValue[] = Array.isArray(info.type)
            ? info.type
            : Array.isArray(info.extra.options)
              ? info.extra.options
              : []
          if (!options.some((o) => pyEquals(o, val))) {
            const big = options.length > 20
            errors.push({
              type: 'value_not_in_list',
              message: 'Value not in list',
              details: `${x}: '${pyStr(val)}' not in ${big ? `(list of length ${options.length})` : pyRepr(options)}`,
              extra_info: { input_name: x, input_config: big ? null : config, received_value: val },
            })
            continue
          }
        }
      }
    }
    if (validatorInputs.length > 0) {
      const image = inputs.image
      if (image !== undefined && !Array.isArray(image)) {
        const name = pyStr(image)
        if (!existsSync(annotatedPath(dir, name, dir.input))) {
          errors.push({
            type: 'custom_validation_failed',
            message: 'Custom validation failed for node',
            details: `image - Invalid image file: ${name}`,
            extra_info: { input_name: 'image' },
          })
        }
      }
    }
    const ret: [boolean, Reason[]] = errors.length > 0 || !valid ? [false, errors] : [true, []]
    validated.set(id, ret)
    return ret
  }

  const good: string[] = []
  const failed: Array<[string, Reason[]]> = []
  const nodeErrors: PyDict = new Map()
  for (const o of outputs) {
    let ok = false
    let reasons: Reason[] = []
    try {
      ;[ok, reasons] = await validateInputs(o)
    } catch (ex) {
      const e = ex instanceof PyError ? ex : new PyError('Exception', String(ex))
      reasons = [
        {
          type: 'exception_during_validation',
          message: 'Exception when validating node',
          details: e.message,
          extra_info: { exception_type: e.pyType, traceback: [] },
        },
      ]
      validated.set(o, [false, reasons])
    }
    if (ok) {
      good.push(o)
      continue
    }
    failed.push([o, reasons])
    for (const [nodeId, [v, rs]] of validated) {
      if (v || rs.length === 0) continue
      if (!nodeErrors.has(nodeId)) {
        const n = graph[nodeId]
        nodeErrors.set(nodeId, {
          errors: rs,
          dependent_outputs: [],
          class_type: isPyObject(n) ? (n.class_type ?? null) : null,
        })
      }
      ;((nodeErrors.get(nodeId) as PyObject).dependent_outputs as PyValue[]).push(o)
    }
  }
  if (good.length === 0) {
    const lines: string[] = []
    for (const [, rs] of failed) for (const r of rs) lines.push(`${pyStr(r.message)}: ${pyStr(r.details)}`)
    return {
      kind: 'refused',
      error: {
        type: 'prompt_outputs_failed_validation',
        message: 'Prompt outputs failed validation',
        details: lines.join('\n'),
        extra_info: {},
      },
      nodeErrors,
    }
  }
  return { kind: 'ok', outputs: good, nodeErrors }
}

function refusedEarly(message: string, id: string): ValidationOutcome {
  return {
    kind: 'refused',
    error: { type: 'invalid_prompt', message, details: `Node ID '#${id}'`, extra_info: {} },
    nodeErrors: new Map(),
  }
}
