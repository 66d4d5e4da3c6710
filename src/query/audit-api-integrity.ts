/**
 * The audit API's tamper-evidence routes: the verifier key (`/_audit/api/key`), the whole ledger verified now
 * (`/_audit/api/integrity`), and one session's evidence bundle and its verification
 * (`/_audit/api/sessions/{id}/evidence`, `.../integrity`).
 */
import { asJsonValue } from '../audit/json-value.js'
import { sendJson } from '../comfyui/send-json.js'
import { buildEvidence, verifyEvidence } from '../ledger/evidence.js'
import { verifyLedger } from '../ledger/verify-ledger.js'
import { notFound, send, type ApiCall, type ApiHandler } from './audit-api-http.js'
import type { IntegrityReport, SessionIntegrity } from './dashboard-types.js'

/** The public key auditors verify checkpoints and evidence bundles with; the read itself is audited. */
export const verifierKey: ApiHandler = async ({ res, options }) => {
  if (!options.verifierKey) return notFound(res, 'no ledger key')
  send(res, 200, { verifier_key: options.verifierKey })
  return true
}

export const ledgerIntegrity: ApiHandler = async ({ res, options }) => {
  if (!options.verifierKey) return notFound(res, 'no ledger key')
  const report = await verifyLedger({ store: options.store, verifierKey: options.verifierKey })
  const origins = await Promise.all(
    report.origins.map(async (o) => ({
      ...o,
      latest_checkpoints: (await options.store.checkpoints(o.origin))
        .slice(-10)
        .reverse()
        .map((cp) => ({ size: cp.size, root_hash: cp.root_hash, created_at: cp.created_at, note: cp.note })),
    })),
  )
  const answer: IntegrityReport = {
    ok: report.ok,
    verified_at: new Date().toISOString(),
    origins,
    problems: report.problems.map((p) => ({ ...p })),
  }
  send(res, 200, asJsonValue(answer))
  return true
}

/** The evidence bundle of session `id` as a download, or its verification, as `part` asks. */
export async function sessionEvidence(
  call: ApiCall,
  id: string,
  part: 'evidence' | 'integrity',
): Promise<boolean> {
  const { res, url, options } = call
  const session = await options.store.session(id, url.searchParams.get('origin') ?? undefined)
  if (!session) return notFound(res, `no session ${id}`)
  const built = await buildEvidence({ store: options.store, sessionId: id, origin: session.origin })
  if (part === 'evidence') {
    if (!built.ok) send(res, 409, { error: built.reason })
    else {
      sendJson(res, 200, built.value, {
        'content-disposition': `attachment; filename="evidence-${id.replace(/[^A-Za-z0-9._-]/g, '_')}.json"`,
      })
    }
    return true
  }
  // "Verified now": the bundle is rebuilt from the stored log and checked like an auditor would check it.
  const verified =
    built.ok && options.verifierKey ? verifyEvidence(built.value, options.verifierKey) : undefined
  const answer: SessionIntegrity =
    built.ok && verified?.ok
      ? {
          state: 'verified',
          checkpoint_size: verified.value.treeSize,
          events: verified.value.events,
          verified_at: new Date().toISOString(),
          reason: null,
        }
      : {
          state: !built.ok && /no signed checkpoint covers/.test(built.reason) ? 'pending' : 'failed',
          checkpoint_size: null,
          events: null,
          verified_at: new Date().toISOString(),
          reason: !built.ok
            ? built.reason
            : verified && !verified.ok
              ? verified.reason
              : 'no ledger key to verify with',
        }
  send(res, 200, asJsonValue(answer))
  return true
}
