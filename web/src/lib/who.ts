import { ref } from 'vue'
import type { WhoAmI } from '../../../src/query/dashboard-types.js'
import { api } from './api.js'

/** Who is signed in (null until known, or when the gateway runs without authentication and says so). */
export const who = ref<WhoAmI | null>(null)

export async function loadWho(): Promise<void> {
  const r = await api<WhoAmI>('/_audit/whoami')
  if (r.ok) who.value = r.value
}
