/**
 * Reads the project's TypeScript sources with the compiler's parser (no type-check, so it takes about a second)
 * and answers the structural questions the architecture test and the dead-export lint ask: which file imports
 * which names from which file, what each file exports, and how long each file and function is.
 */
import fs from 'node:fs'
import path from 'node:path'
import ts from 'typescript'

export interface ImportEdge {
  /** Importing file, relative to the repository root with forward slashes. */
  readonly from: string
  /** Imported file (resolved `.js` → `.ts`, directory → `index.ts`), same form. */
  readonly to: string
  /** Names taken; `*` for a namespace import or `export *`. Empty for a side-effect import. */
  readonly names: readonly string[]
  /** Only types are taken (`import type`), so the arrow is erased at run time. */
  readonly typeOnly: boolean
  readonly line: number
}

export interface FunctionSpan {
  readonly file: string
  readonly name: string
  readonly line: number
  readonly lines: number
}

export interface SourceFileInfo {
  readonly file: string
  readonly lines: number
  readonly text: string
  readonly imports: readonly ImportEdge[]
  /** Names this file exports (`default` for a default export); `export *` re-exports are in `imports`. */
  readonly exports: readonly { readonly name: string; readonly line: number }[]
  readonly functions: readonly FunctionSpan[]
}

const SOURCE = /\.(ts|vue)$/

/** Every `.ts` (and `.vue`) file under `dirs` (relative to `root`), skipping node_modules and build output. */
export function listSources(root: string, dirs: readonly string[]): string[] {
  const out: string[] = []
  const walk = (dir: string): void => {
    if (!fs.existsSync(dir)) return
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (entry.name === 'node_modules' || entry.name === 'dist') continue
      const full = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (SOURCE.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(full)
    }
  }
  for (const d of dirs) walk(path.join(root, d))
  return out.map((f) => path.relative(root, f).split(path.sep).join('/')).sort()
}

/** The script of a `.vue` file (its `<script>` blocks), or the text of a `.ts` file. */
function scriptOf(file: string, text: string): string {
  if (!file.endsWith('.vue')) return text
  // Blank out everything outside <script> blocks, keeping line numbers.
  const parts: string[] = []
  const re = /<script\b[^>]*>([\s\S]*?)<\/script>/g
  let last = 0
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const bodyStart = m.index + m[0].indexOf('>') + 1
    parts.push(text.slice(last, bodyStart).replace(/[^\n]/g, ' '), m[1] ?? '')
    last = bodyStart + (m[1]?.length ?? 0)
  }
  parts.push(text.slice(last).replace(/[^\n]/g, ' '))
  return parts.join('')
}

function resolveSpecifier(root: string, from: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null
  const base = path.join(root, path.dirname(from), spec)
  const candidates = [base.replace(/\.js$/, '.ts'), base, `${base}.ts`, path.join(base, 'index.ts')]
  for (const c of candidates)
    if (fs.existsSync(c) && fs.statSync(c).isFile()) return path.relative(root, c).split(path.sep).join('/')
  return null
}

function nameOfFunction(node: ts.SignatureDeclaration): string {
  if (node.name && ts.isIdentifier(node.name)) return node.name.text
  if (node.name) return node.name.getText()
  const parent = node.parent
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent))
    return parent.name.getText()
  return '<anonymous>'
}

function hasExportModifier(node: ts.Node): boolean {
  return (
    ts.canHaveModifiers(node) &&
    (ts.getModifiers(node) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword)
  )
}

function isDefault(node: ts.Node): boolean {
  return (
    ts.canHaveModifiers(node) &&
    (ts.getModifiers(node) ?? []).some((m) => m.kind === ts.SyntaxKind.DefaultKeyword)
  )
}

/** Parses one file. */
export function readSource(root: string, file: string): SourceFileInfo {
  const raw = fs.readFileSync(path.join(root, file), 'utf8')
  const text = scriptOf(file, raw)
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
  const lineOf = (pos: number): number => sf.getLineAndCharacterOfPosition(pos).line + 1
  const imports: ImportEdge[] = []
  const exports: { name: string; line: number }[] = []
  const functions: FunctionSpan[] = []
  const addImport = (spec: string, names: string[], typeOnly: boolean, pos: number): void => {
    const to = resolveSpecifier(root, file, spec)
    if (to !== null) imports.push({ from: file, to, names, typeOnly, line: lineOf(pos) })
  }

  for (const stmt of sf.statements) {
    if (ts.isImportDeclaration(stmt) && ts.isStringLiteral(stmt.moduleSpecifier)) {
      const clause = stmt.importClause
      const names: string[] = []
      let allTypes = clause?.isTypeOnly ?? false
      if (clause?.name) names.push('default')
      const bindings = clause?.namedBindings
      if (bindings && ts.isNamespaceImport(bindings)) names.push('*')
      if (bindings && ts.isNamedImports(bindings)) {
        for (const el of bindings.elements) names.push((el.propertyName ?? el.name).text)
        if (!allTypes && bindings.elements.length > 0 && !clause?.name)
          allTypes = bindings.elements.every((el) => el.isTypeOnly)
      }
      addImport(stmt.moduleSpecifier.text, names, allTypes, stmt.getStart())
    } else if (ts.isExportDeclaration(stmt)) {
      const clause = stmt.exportClause
      if (stmt.moduleSpecifier && ts.isStringLiteral(stmt.moduleSpecifier)) {
        const names =
          clause && ts.isNamedExports(clause)
            ? clause.elements.map((el) => (el.propertyName ?? el.name).text)
            : ['*']
        addImport(stmt.moduleSpecifier.text, names, stmt.isTypeOnly, stmt.getStart())
      }
      if (clause && ts.isNamedExports(clause))
        for (const el of clause.elements) exports.push({ name: el.name.text, line: lineOf(el.getStart()) })
      else if (clause && ts.isNamespaceExport(clause))
        exports.push({ name: clause.name.text, line: lineOf(stmt.getStart()) })
    } else if (ts.isExportAssignment(stmt)) {
      exports.push({ name: 'default', line: lineOf(stmt.getStart()) })
    } else if (hasExportModifier(stmt)) {
      if (isDefault(stmt)) exports.push({ name: 'default', line: lineOf(stmt.getStart()) })
      else if (ts.isVariableStatement(stmt)) {
        for (const d of stmt.declarationList.declarations)
          if (ts.isIdentifier(d.name)) exports.push({ name: d.name.text, line: lineOf(d.getStart()) })
      } else {
        const named = stmt as ts.DeclarationStatement
        if (named.name && ts.isIdentifier(named.name))
          exports.push({ name: named.name.text, line: lineOf(stmt.getStart()) })
      }
    }
  }

  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0]
      if (arg && ts.isStringLiteralLike(arg)) addImport(arg.text, ['*'], false, node.getStart())
    }
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const start = lineOf(node.getStart())
      const end = lineOf(node.getEnd())
      functions.push({ file, name: nameOfFunction(node), line: start, lines: end - start + 1 })
    }
    ts.forEachChild(node, visit)
  }
  visit(sf)
  return {
    file,
    lines: raw.split('\n').length - (raw.endsWith('\n') ? 1 : 0),
    text: raw,
    imports,
    exports,
    functions,
  }
}

/** Every source under `dirs`, parsed. */
export function readSources(root: string, dirs: readonly string[]): SourceFileInfo[] {
  return listSources(root, dirs).map((f) => readSource(root, f))
}

/** The folder a file of `src/` belongs to: `src/store/sqlite/x.ts` → `store`; `src/create-gateway.ts` → `root`. */
export function srcFolder(file: string): string {
  const parts = file.split('/')
  return parts.length > 2 ? (parts[1] ?? '') : 'root'
}
