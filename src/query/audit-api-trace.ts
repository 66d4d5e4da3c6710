/**
 * Trace-an-image: which recorded run produced an output. `POST /_audit/api/trace` takes the image itself (its
 * SHA-256, or its PNG prompt chunk when it was re-encoded); `GET /_audit/api/trace?sha256=` a pasted hash.
 */
import { asJsonValue } from '../audit/json-value.js'
import { BodyTooLarge, readBody } from '../gateway/http-util.js'
import { traceImage, traceSha256 } from '../provenance/trace.js'
import { badRequest, send, type ApiHandler } from './audit-api-http.js'

const MAX_TRACE_BYTES = 256 * 1024 * 1024

export const traceUploadedImage: ApiHandler = async ({ req, res, options }) => {
  let image: Buffer
  try {
    image = await readBody(req, MAX_TRACE_BYTES)
  } catch (error) {
    if (!(error instanceof BodyTooLarge)) throw error
    send(res, 413, { error: `image larger than ${MAX_TRACE_BYTES} bytes` })
    return true
  }
  if (image.length === 0) return badRequest(res, 'POST the image bytes as the request body')
  const found = await traceImage(options.store, image)
  if (!found.ok) send(res, 404, { error: found.reason })
  else send(res, 200, asJsonValue(found.value))
  return true
}

/** Only the recorded outputs can answer a pasted hash: there is no PNG chunk to read. */
export const traceHash: ApiHandler = async ({ res, url, options }) => {
  const sha256 = (url.searchParams.get('sha256') ?? '').trim().toLowerCase()
  if (!/^[0-9a-f]{64}$/.test(sha256)) {
    return badRequest(res, `sha256: expected 64 hex digits, got ${JSON.stringify(sha256)}`)
  }
  const found = (await traceSha256(options.store, sha256)) ?? {
    ok: false as const,
    reason: `no recorded output has SHA-256 ${sha256}`,
  }
  if (!found.ok) send(res, 404, { error: found.reason })
  else send(res, 200, asJsonValue(found.value))
  return true
}
