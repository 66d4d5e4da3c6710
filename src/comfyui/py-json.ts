/**
 * JSON text as ComfyUI writes it: Python's `json.dumps` defaults (`", "` and `": "` separators,
 * `ensure_ascii=True`). The gateway writes frames and error bodies that a client must not be able to tell
 * from ComfyUI's own, so every such text is built here. The escaping itself is audit/json.ts's writer
 * (its `python` and `ascii` modes), which the ledger and the trace replay share.
 */
import { stringifyJson } from '../audit/json.js'

/**
 * A JSON string literal as `json.dumps` writes it: non-ASCII (and DEL) escaped as `\uXXXX`, one UTF-16
 * unit at a time.
 *
 * @example
 * pyString('café') // '"caf\\u00e9"'
 */
export function pyString(s: string): string {
  return stringifyJson(s, { ascii: true })
}

/**
 * The body of a refusal in the shape ComfyUI gives a rejected `POST /prompt`
 * (`{"error": {type, message, details, extra_info}, "node_errors": {}}`), so clients that read ComfyUI's
 * errors show the gateway's too.
 */
export function comfyErrorBody(type: string, message: string, details: string): string {
  return `{"error": {"type": ${pyString(type)}, "message": ${pyString(message)}, "details": ${pyString(details)}, "extra_info": {}}, "node_errors": {}}`
}
