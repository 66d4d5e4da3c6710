/**
 * The worker side of {@link createOffThreadPromptAnalyzer}: parses and redacts one `POST /prompt` body per
 * message with the configured policy, and posts the analysis back (structured clone keeps bigints).
 */
import { parentPort, workerData } from 'node:worker_threads'
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
    parentPort?.postMessage({ id: call.id, ok: true, value })
  } catch (error) {
    parentPort?.postMessage({ id: call.id, ok: false, error: String(error) })
  }
})
