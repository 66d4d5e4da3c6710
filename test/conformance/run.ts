/**
 * Records the conformance scenarios against any ComfyUI-compatible URL (real ComfyUI, the stand-in, the
 * gateway) and prints the comparison with the recording of ComfyUI 0.8.0.
 * Usage: npx tsx test/conformance/run.ts URL [OUTDIR] [--no-model] [--verbose] [--speed N] [--header 'Name: value']...
 * Exit status 0 when every scenario matches.
 */
import { compareTraces } from './compare-traces.js'
import { recordScenarios } from './recorder.js'
import { readTraceFile } from './trace-row.js'

const FIXTURE = new URL('../../fixtures/comfyui-0.8.0/trace.jsonl', import.meta.url).pathname

const args = process.argv.slice(2)
const positional: string[] = []
const headers: Record<string, string> = {}
let withModel = true
let verbose = false
let speedHint = 1
for (let i = 0; i < args.length; i++) {
  const a = args[i]!
  if (a === '--no-model') withModel = false
  else if (a === '--verbose') verbose = true
  else if (a === '--speed') speedHint = Number(args[++i])
  else if (a === '--header') {
    const h = args[++i] ?? ''
    const colon = h.indexOf(':')
    if (colon <= 0) throw new Error(`--header expects 'Name: value', got ${JSON.stringify(h)}`)
    headers[h.slice(0, colon).trim()] = h.slice(colon + 1).trim()
  } else positional.push(a)
}
const [url, outDir] = positional
if (url === undefined) {
  console.error(
    'usage: npx tsx test/conformance/run.ts URL [OUTDIR] [--no-model] [--verbose] [--speed N] [--header "Name: value"]',
  )
  process.exit(2)
}

const reference = await readTraceFile(FIXTURE)
const rows = await recordScenarios(url, { withModel, outDir, speedHint, headers })
for (const r of rows) {
  if (r.kind === 'scenario_end' && r.ok !== true)
    console.log(`scenario ${r.scenario} failed:\n${String(r.error)}`)
}
const { lines, matched, total } = compareTraces(reference, rows, { verbose })
for (const line of lines) console.log(line)
if (outDir !== undefined) console.log(`trace written to ${outDir}/trace.jsonl`)
process.exit(matched === total ? 0 : 1)
