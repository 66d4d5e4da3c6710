/** Who a request comes from, as authentication found it, and the security events authentication emits. */
import type { Submitter } from '../audit/types.js'
import type { Role } from '../config/security-config.js'

/** How a request was authenticated. */
export type AuthMethod = 'none' | 'token' | 'cookie' | 'trusted-header'

/** An authenticated person, as the gateway and the policy see them. */
export interface Identity {
  /** Person's name (`local` without authentication). */
  readonly user: string
  readonly role: Role
  readonly auth_method: AuthMethod
  readonly client_address: string | null
  readonly user_agent: string | null
}

/** Why a request has no identity: 401 (no or wrong credentials) or 403 (known but not allowed in). */
export interface AuthFailure {
  readonly ok: false
  readonly status: 401 | 403
  readonly reason: string
}

export type AuthResult = { readonly ok: true; readonly identity: Identity } | AuthFailure

/** The audit trail's view of an identity. */
export function toSubmitter(identity: Identity, clientId: string | null = null): Submitter {
  return {
    user: identity.user,
    auth_method: identity.auth_method,
    client_address: identity.client_address,
    user_agent: identity.user_agent,
    client_id: clientId,
  }
}

/** A security event for the audit log (login, logout, provisioning); never carries a credential. */
export interface SecurityEvent {
  readonly kind: 'login.succeeded' | 'login.failed' | 'logout' | 'person.provisioned'
  readonly user: string | null
  readonly client_address: string | null
  readonly user_agent: string | null
  readonly reason?: string
}
