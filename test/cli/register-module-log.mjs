// Installs module-log-hook.mjs (for `node --import`): hooks are registered from a module, not a flag, in Node 20.
import { register } from 'node:module'

register('./module-log-hook.mjs', import.meta.url)
