/**
 * Binary previews between one upstream socket and its downstream sockets (protocol §1.4). The upstream
 * socket always negotiates PREVIEW_IMAGE_WITH_METADATA (type 4), since downstream sockets that share it may
 * differ in what they asked for; each downstream socket gets what ComfyUI would have sent it.
 */
import { BINARY_PREVIEW_IMAGE, BINARY_PREVIEW_WITH_METADATA } from '../comfyui/frames.js'

/**
 * PREVIEW_IMAGE_WITH_METADATA (4, metadata length, JSON, image) as PREVIEW_IMAGE (1, 1 = JPEG or
 * 2 = PNG, image): what server.py's send_image would have sent. Null when the frame is malformed.
 */
function toLegacyPreview(frame: Buffer): Buffer | null {
  if (frame.length < 8) return null
  const len = frame.readUInt32BE(4)
  if (8 + len > frame.length) return null
  let png = false
  try {
    const meta = JSON.parse(frame.subarray(8, 8 + len).toString('utf8')) as unknown
    png =
      typeof meta === 'object' &&
      meta !== null &&
      !Array.isArray(meta) &&
      (meta as Record<string, unknown>).image_type === 'image/png'
  } catch {
    return null
  }
  const head = Buffer.alloc(8)
  head.writeUInt32BE(BINARY_PREVIEW_IMAGE, 0)
  head.writeUInt32BE(png ? 2 : 1, 4)
  return Buffer.concat([head, frame.subarray(8 + len)])
}

function binaryType(frame: Buffer): number {
  return frame.length >= 4 ? frame.readUInt32BE(0) : -1
}

/**
 * A binary frame for the client's socket: unchanged, except a type 4 preview for a socket that did not ask
 * for metadata, which gets the type 1 frame it would have had (or the frame as is, when malformed).
 */
export function binaryFrameFor(frame: Buffer, wantsPreviewMetadata: boolean): Buffer {
  if (binaryType(frame) !== BINARY_PREVIEW_WITH_METADATA || wantsPreviewMetadata) return frame
  return toLegacyPreview(frame) ?? frame
}

/**
 * What ComfyUI would have broadcast for a binary frame of a prompt whose client gave no id: previews as
 * type 1, nothing else (null).
 */
export function broadcastPreview(frame: Buffer): Buffer | null {
  const type = binaryType(frame)
  if (type === BINARY_PREVIEW_IMAGE) return frame
  return type === BINARY_PREVIEW_WITH_METADATA ? toLegacyPreview(frame) : null
}
