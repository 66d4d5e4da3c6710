import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'

const ROOT = new URL('../..', import.meta.url).pathname

export interface GatewayProcess {
  readonly child: ChildProcess
  readonly url: string
}

export interface GatewayProcessOptions {
  readonly comfyui: string
  readonly data: string
  readonly origin: string
  /** `COMFY_AUDIT_CONFIG` for the child; '' (the default) so a config in the developer's environment is not read. */
  readonly config?: string
}

/**
 * Spawns `comfy-audit ARGS…` from the sources, stdout and stderr piped; `config` is its `COMFY_AUDIT_CONFIG`,
 * '' by default so a config in the developer's environment is not read.
 */
export function spawnCli(args: readonly string[], config = ''): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, COMFY_AUDIT_CONFIG: config },
  })
}

/** Resolves once the child has exited, at once if it already has. */
export function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once('exit', () => resolve())
  })
}

/**
 * Starts `comfy-audit serve` from the sources in child processes, as a user would, and remembers each one so a
 * test's `afterAll` can SIGKILL whatever a failed assertion left running.
 */
export function gatewayProcesses(): {
  start(options: GatewayProcessOptions): Promise<GatewayProcess>
  killAll(): Promise<void>
} {
  const children: ChildProcess[] = []
  return {
    async start({ comfyui, data, origin, config = '' }) {
      const child = spawnCli(
        ['serve', '--comfyui', comfyui, '--listen', '127.0.0.1:0', '--data', data, '--origin', origin],
        config,
      )
      children.push(child)
      let stderr = ''
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
      // The port is chosen by the OS (port 0), so the URL is only known from the line the gateway prints.
      const url = await new Promise<string>((resolve, reject) => {
        const lines = createInterface({ input: child.stdout! })
        lines.on('line', (line) => {
          const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(line)
          if (m) resolve(m[1]!)
        })
        child.once('exit', (code) =>
          reject(new Error(`gateway exited with ${code} before listening:\n${stderr}`)),
        )
      })
      return { child, url }
    },
    async killAll() {
      for (const child of children)
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await Promise.all(children.map(exited))
    },
  }
}
