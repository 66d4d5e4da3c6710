/**
 * The worker side of {@link createOffThreadPromptAnalyzer}: parses and redacts one `POST /prompt` body per
 * message with the configured policy, and posts the analysis back as JSON text written by `stringifyJson`: a
 * structured clone keeps bigints but drops the number spellings (`cfg: 1.0` came back as `1`), and one string
 * is also cheaper to send than a cloned object graph. `graph` and `workflow` are references into `prompt` and
 * `extra_data`, so they are left out and restored on the other side.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { stringifyJson } from '../audit/json.js'
import type { JsonValue } from '../audit/types.js'
import { analyzePromptBody } from '../capture/prompt-analysis.js'
import type { RedactionConfig } from '../config/security-config.js'
import { createRedactor } from './redaction.js'

interface Call {
  readonly id: number
  readonly body: Uint8Array
  readonly maxTextBytes?: number
}

const redact = createRedactor((workerData as { redaction: RedactionConfig }).redaction)
parentPort?.on('message', (call: Call) => {
  try {
    const body = Buffer.from(call.body.buffer, call.body.byteOffset, call.body.byteLength)
    const value = analyzePromptBody(body, {
      redact,
      ...(call.maxTextBytes !== undefined ? { maxTextBytes: call.maxTextBytes } : {}),
    })
    // cast-allowed: an analysis without its graph and workflow objects is plain JSON data
    const plain = value.ok ? ({ ...value, graph: null, workflow: null } as unknown as JsonValue) : value
    const json = stringifyJson(plain)
    parentPort?.postMessage({ id: call.id, ok: true, json, hasGraph: value.ok && value.graph !== null })
  } catch (error) {
    parentPort?.postMessage({ id: call.id, ok: false, error: String(error) })
  }
})
