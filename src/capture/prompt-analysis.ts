/**
 * What capture derives from a submitted prompt body: the redacted graph, UI workflow and extra_data, their
 * hashes, seeds, referenced models, and per-node inputs. Shared by live capture and reconciliation.
 */
import { canonicalJson, keepSpellings, parseJson, sha256Hex } from '../audit/json.js'
import type { JsonObject, JsonValue, ModelRef } from '../audit/types.js'
import { redactKeyedValues } from './keyed-text-scan.js'
import {
  checkWith,
  isJsonObject,
  zPromptGraph,
  type PromptGraph,
  type PromptNode,
} from '../comfyui/schemas.js'

/** The literal that replaces a secret. */
export const REDACTED = '[REDACTED]'

/**
 * `extra_data` keys ComfyUI treats as secrets (`SENSITIVE_EXTRA_DATA_KEYS` in its execution code). Their
 * values are replaced before anything is hashed or stored: not even a hash of them reaches the log.
 */
export const SENSITIVE_KEYS: readonly string[] = ['api_key_comfy_org', 'auth_token_comfy_org']

/** A user-supplied redaction hook: gets a value and where it sits (`['extra_data']`, `['prompt']`, ...). */
export type Redactor = (value: JsonValue, path: string[]) => JsonValue

/** Deep copy with the values of {@link SENSITIVE_KEYS} replaced by {@link REDACTED}, wherever they sit. */
export function stripSensitive(value: JsonValue): JsonValue {
  // keepSpellings: a number read as `1.0` is still written `1.0` (see audit/json.ts).
  if (Array.isArray(value)) return keepSpellings(value, value.map(stripSensitive))
  if (isJsonObject(value)) {
    const out: JsonObject = {}
    for (const [key, v] of Object.entries(value)) {
      out[key] = SENSITIVE_KEYS.includes(key) ? REDACTED : stripSensitive(v)
    }
    return keepSpellings(value, out)
  }
  return value
}

/**
 * Redacts {@link SENSITIVE_KEYS} in text that is not valid JSON (best effort, for bodies recorded as given).
 * Keys are compared decoded, so an escape (`"api_key_comfy_or\u0067"`) hides none (issue 9 class 4).
 */
export function stripSensitiveText(text: string): string {
  return redactKeyedValues(text, (key) => SENSITIVE_KEYS.includes(key), REDACTED)
}

/** A string beyond the limit is replaced by `{truncated: true, length, sha256}`, at any depth. */
export function truncateLongStrings(value: JsonValue, maxLength: number): JsonValue {
  if (typeof value === 'string') {
    return value.length > maxLength
      ? { truncated: true, length: value.length, sha256: sha256Hex(value) }
      : value
  }
  if (Array.isArray(value))
    return keepSpellings(
      value,
      value.map((v) => truncateLongStrings(v, maxLength)),
    )
  if (isJsonObject(value)) {
    const out: JsonObject = {}
    for (const [key, v] of Object.entries(value)) out[key] = truncateLongStrings(v, maxLength)
    return keepSpellings(value, out)
  }
  return value
}

/** True for a prompt link `[source_node_id, output_index]`. */
function isLink(value: JsonValue): value is [string, number] {
  return (
    Array.isArray(value) &&
    value.length === 2 &&
    typeof value[0] === 'string' &&
    typeof value[1] === 'number' &&
    Number.isInteger(value[1])
  )
}

/** A node's inputs for its run record: literals as given (long strings summarised), links as `{node, output}`. */
export function nodeInputs(node: PromptNode | undefined, maxStringLength: number): JsonObject {
  const out: JsonObject = {}
  if (!node?.inputs) return out
  for (const [name, value] of Object.entries(node.inputs)) {
    out[name] = isLink(value)
      ? { node: value[0], output: value[1] }
      : truncateLongStrings(value, maxStringLength)
  }
  return keepSpellings(node.inputs, out)
}

const SEED_INPUTS = new Set(['seed', 'noise_seed'])

/** Seed inputs (`seed`, `noise_seed`) holding a literal integer, exact (bigints stay bigints). */
function findSeeds(graph: PromptGraph): { node_id: string; input_name: string; value: JsonValue }[] {
  const seeds: { node_id: string; input_name: string; value: JsonValue }[] = []
  for (const [nodeId, node] of Object.entries(graph)) {
    for (const [name, value] of Object.entries(node.inputs ?? {})) {
      if (SEED_INPUTS.has(name) && (typeof value === 'bigint' || typeof value === 'number')) {
        seeds.push({ node_id: nodeId, input_name: name, value })
      }
    }
  }
  return seeds
}

// Model folders by input name (§6). ComfyUI says nothing about where a COMBO's options come from, so this
// is a per-input map, with per-class exceptions where a common input name means another folder.
const MODEL_INPUTS: ReadonlyMap<string, string> = new Map([
  ['ckpt_name', 'checkpoints'],
  ['lora_name', 'loras'],
  ['vae_name', 'vae'],
  ['unet_name', 'diffusion_models'],
  ['control_net_name', 'controlnet'],
  ['style_model_name', 'style_models'],
  ['hypernetwork_name', 'hypernetworks'],
  ['gligen_name', 'gligen'],
])
const CLASS_MODEL_INPUTS: ReadonlyMap<string, ReadonlyMap<string, string>> = new Map([
  ['CLIPVisionLoader', new Map([['clip_name', 'clip_vision']])],
])

function modelFolder(classType: string, inputName: string): string | null {
  const special = CLASS_MODEL_INPUTS.get(classType)?.get(inputName)
  if (special) return special
  const folder = MODEL_INPUTS.get(inputName)
  if (folder) return folder
  if (/^clip_name\d*$/.test(inputName)) return 'text_encoders'
  if (inputName === 'model_name' && /upscale/i.test(classType) && /loader/i.test(classType))
    return 'upscale_models'
  return null
}

/** Model files the prompt's loader nodes name (names only; hashes are added elsewhere). */
export function findModels(graph: PromptGraph): ModelRef[] {
  const models: ModelRef[] = []
  for (const [nodeId, node] of Object.entries(graph)) {
    for (const [name, value] of Object.entries(node.inputs ?? {})) {
      if (typeof value !== 'string') continue
      const folder = modelFolder(node.class_type, name)
      if (folder) models.push({ folder, name: value, node_id: nodeId, input_name: name })
    }
  }
  return models
}

/** Everything capture records about a prompt graph and its extra_data. */
interface PromptAnalysis {
  /** The prompt as given (redacted); not necessarily a graph. Null when the body had none. */
  readonly prompt: JsonValue | null
  /** The graph, when `prompt` is one. */
  readonly graph: PromptGraph | null
  /** `extra_data.extra_pnginfo.workflow` (the UI graph), redacted. */
  readonly workflow: JsonValue | null
  readonly prompt_sha256: string | null
  readonly workflow_sha256: string | null
  /** extra_data with secrets replaced by {@link REDACTED}. */
  readonly extra_data: JsonValue | null
  readonly seeds: { node_id: string; input_name: string; value: JsonValue }[]
  readonly models: ModelRef[]
}

/**
 * Analyzes a prompt and its extra_data. Secrets are stripped first, then the redaction hook runs, then the
 * hashes are taken, so the stored values re-hash to the stored hashes and no secret is ever hashed.
 */
export function analyzePrompt(
  prompt: JsonValue | undefined,
  extraData: JsonValue | undefined,
  redact?: Redactor,
): PromptAnalysis {
  const hook: Redactor = redact ?? ((v) => v)
  const cleanPrompt = prompt === undefined ? null : hook(stripSensitive(prompt), ['prompt'])
  const cleanExtra = extraData === undefined ? null : hook(stripSensitive(extraData), ['extra_data'])
  let workflow: JsonValue | null = null
  if (isJsonObject(cleanExtra) && isJsonObject(cleanExtra.extra_pnginfo)) {
    workflow = cleanExtra.extra_pnginfo.workflow ?? null
  }
  const checked = cleanPrompt === null ? null : checkWith(zPromptGraph, cleanPrompt)
  // The checked prompt itself, not the schema's copy of it: same content (loose objects, values passed by
  // reference), and node inputs keep the number spellings read with them (`cfg: 1.0`, see audit/json.ts).
  const graph = checked?.ok ? (cleanPrompt as PromptGraph) : null
  return {
    prompt: cleanPrompt,
    graph,
    workflow,
    prompt_sha256: cleanPrompt === null ? null : sha256Hex(canonicalJson(cleanPrompt)),
    workflow_sha256: workflow === null ? null : sha256Hex(canonicalJson(workflow)),
    extra_data: cleanExtra,
    seeds: graph ? findSeeds(graph) : [],
    models: graph ? findModels(graph) : [],
  }
}

/** A `POST /prompt` body, analyzed; or, when it is not JSON, its redacted text. */
export type PromptBodyAnalysis =
  | ({ ok: true; client_id: string | null } & PromptAnalysis)
  | { ok: false; reason: string; text: string; truncated: boolean }

/** Analyzes a raw `POST /prompt` body. Text bodies longer than `maxTextBytes` are cut. */
export function analyzePromptBody(
  body: Buffer,
  options: { redact?: Redactor; maxTextBytes?: number } = {},
): PromptBodyAnalysis {
  const parsed = parseJson(body)
  if (!parsed.ok) {
    const max = options.maxTextBytes ?? 1 << 20
    const text = body.subarray(0, max).toString('utf8')
    return { ok: false, reason: parsed.reason, text: stripSensitiveText(text), truncated: body.length > max }
  }
  const obj = parsed.value
  if (!isJsonObject(obj)) {
    const max = options.maxTextBytes ?? 1 << 20
    const text = body.subarray(0, max).toString('utf8')
    return {
      ok: false,
      reason: 'body is not a JSON object',
      text: stripSensitiveText(text),
      truncated: body.length > max,
    }
  }
  const analysis = analyzePrompt(obj.prompt, obj.extra_data, options.redact)
  let clientId: string | null = null
  if (typeof obj.client_id === 'string') clientId = obj.client_id
  else if (isJsonObject(obj.extra_data) && typeof obj.extra_data.client_id === 'string') {
    clientId = obj.extra_data.client_id
  }
  return { ok: true, client_id: clientId, ...analysis }
}

/** Files in a node's UI output (`{images: [{filename, subfolder, type}], ...}`), tagged with the node id. */
export function outputFiles(
  nodeId: string,
  ui: JsonValue | null | undefined,
): { filename: string; subfolder: string; type: string; node_id: string }[] {
  const files: { filename: string; subfolder: string; type: string; node_id: string }[] = []
  if (!isJsonObject(ui)) return files
  for (const list of Object.values(ui)) {
    if (!Array.isArray(list)) continue
    for (const item of list) {
      if (isJsonObject(item) && typeof item.filename === 'string') {
        files.push({
          filename: item.filename,
          subfolder: typeof item.subfolder === 'string' ? item.subfolder : '',
          type: typeof item.type === 'string' ? item.type : 'output',
          node_id: nodeId,
        })
      }
    }
  }
  return files
}
