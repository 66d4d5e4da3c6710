/**
 * Defaults shared by the config schema and the library options it feeds (the gateway, capture), so that a
 * gateway built in code behaves as one started from an empty config file. Import-free, so the library pays
 * nothing for it.
 */

/** Where the gateway listens by default. */
export const DEFAULT_LISTEN_HOST = '127.0.0.1'
/** Port the gateway listens on by default (ComfyUI's 8188, plus two). */
export const DEFAULT_LISTEN_PORT = 8190
/** Input strings longer than this are stored truncated, with their length and SHA-256. */
export const DEFAULT_MAX_INPUT_LENGTH = 4096
