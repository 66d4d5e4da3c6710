import { onBeforeUnmount, onMounted, ref } from 'vue'
import type { LiveSessionsEvent } from '../../../src/query/dashboard-types.js'

/**
 * Listens to `/_audit/api/live` while the component is mounted and calls `onChange` with the ids of sessions
 * whose events were committed. `connected` says whether the stream is open (the browser reconnects by itself).
 */
export function useLiveSessions(onChange: (ids: string[]) => void): {
  connected: ReturnType<typeof ref<boolean>>
} {
  const connected = ref(false)
  let source: EventSource | null = null
  onMounted(() => {
    source = new EventSource('/_audit/api/live')
    source.onopen = () => (connected.value = true)
    source.onerror = () => (connected.value = false)
    source.addEventListener('sessions', (e) => {
      const data = JSON.parse((e as MessageEvent<string>).data) as LiveSessionsEvent
      onChange(data.session_ids)
    })
  })
  onBeforeUnmount(() => {
    source?.close()
    source = null
  })
  return { connected }
}
