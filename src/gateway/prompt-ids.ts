/**
 * The one answer to "is this prompt id known?" that the gateway asks before it forwards a prompt whose id the
 * client chose (ComfyUI would run a second prompt under the first one's id). The audit gateway passes capture,
 * which knows every id the log holds, every submission, and what ComfyUI holds under the gateway's client ids.
 * The socket hub keeps its own per-socket prompt sets only to route frames and to know which upstream socket
 * must stay open; it tells the registry what it learns from ComfyUI, and never answers the question itself.
 */

/** Where the gateway claims prompt ids; see the module comment. */
export interface PromptIdRegistry {
  /**
   * Claims an id for a prompt about to be forwarded: false when it is already known (recorded, running,
   * queued or just submitted), true when it was free and is now reserved. Synchronous, before anything is
   * awaited, so two requests with one id cannot both pass; it must never wait on a store.
   */
  claimPromptId(promptId: string): boolean
  /**
   * ComfyUI holds `promptId` under one of the gateway's client ids (the hub saw it in ComfyUI's queue or
   * starting to run): the id is taken from now on, though nothing may have recorded it yet (a prompt the
   * previous gateway process forwarded just before it stopped).
   */
  notePromptIdHeld(promptId: string): void
}

/**
 * The registry of a gateway used without capture: every id it forwarded or saw ComfyUI hold, kept while the
 * process lives (about 100 bytes an id), so no duplicate is accepted.
 */
export function memoryPromptIds(): PromptIdRegistry {
  const ids = new Set<string>()
  return {
    claimPromptId(promptId) {
      if (ids.has(promptId)) return false
      ids.add(promptId)
      return true
    },
    notePromptIdHeld(promptId) {
      ids.add(promptId)
    },
  }
}
