// A module hook for the CLI start-up test: appends every URL the program resolves to the file named by
// COMFY_AUDIT_MODULE_LOG, synchronously, so the list is complete when the import that caused it settles.
import { appendFileSync } from 'node:fs'
import process from 'node:process'

const log = process.env.COMFY_AUDIT_MODULE_LOG

export async function resolve(specifier, context, nextResolve) {
  const result = await nextResolve(specifier, context)
  if (log) appendFileSync(log, result.url + '\n')
  return result
}
