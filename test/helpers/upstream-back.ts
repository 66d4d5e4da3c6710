import type { AuditGateway } from '../../src/create-gateway.js'

/**
 * Resolves once the gateway's upstream socket went down and came back. Call it before closing the upstream, so
 * the going-down event is not missed.
 */
export function upstreamBack(audit: AuditGateway): Promise<void> {
  return new Promise((resolve) => {
    let wasDown = false
    const off = audit.gateway.on('upstream', ({ healthy }) => {
      if (!healthy) wasDown = true
      else if (wasDown) {
        off()
        resolve()
      }
    })
  })
}
