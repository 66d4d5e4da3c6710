/**
 * `comfy-audit sim`: runs the ComfyUI 0.8 stand-in (src/sim) as a standalone server.
 */
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'

/** Adds `sim --host H --port P --data DIR [--speed 1] [--web-root DIR] [--comfyui-version V] ...` to the program. */
export function registerSimCommand(program: Command): void {
  program
    .command('sim')
    .description('run the ComfyUI 0.8 stand-in (HTTP + WebSocket) on a data directory')
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0 = any free port)', '8188')
    .requiredOption('--data <dir>', 'data directory (input/, output/, temp/, models/ are created and seeded)')
    .option('--speed <factor>', 'time scale: 1 = recorded timings, 10 = ten times faster', '1')
    .option('--web-root <dir>', 'a built ComfyUI front end to serve at / (as ComfyUI serves its web root)')
    .option('--preview-method <method>', 'sampler previews: none, auto, latent2rgb or taesd', 'none')
    .option('--comfyui-version <version>', 'the ComfyUI version /system_stats reports (default 0.8.0)')
    .option('--pytorch-version <version>', 'the PyTorch version /system_stats reports (default 2.11.0+cu130)')
    .action(
      async (opts: {
        host: string
        port: string
        data: string
        speed: string
        webRoot?: string
        previewMethod: string
        comfyuiVersion?: string
        pytorchVersion?: string
      }) => {
        const port = Number(opts.port)
        const speed = Number(opts.speed)
        if (!Number.isInteger(port) || port < 0 || port > 65535) {
          console.error(`--port must be an integer between 0 and 65535, got ${opts.port}`)
          process.exitCode = 2
          return
        }
        if (!(speed > 0)) {
          console.error(`--speed must be a positive number, got ${opts.speed}`)
          process.exitCode = 2
          return
        }
        if (!['none', 'auto', 'latent2rgb', 'taesd'].includes(opts.previewMethod)) {
          console.error(`--preview-method must be none, auto, latent2rgb or taesd, got ${opts.previewMethod}`)
          process.exitCode = 2
          return
        }
        const webRoot = opts.webRoot === undefined ? undefined : resolve(opts.webRoot)
        if (webRoot !== undefined && !existsSync(join(webRoot, 'index.html'))) {
          console.error(
            `--web-root must be a folder holding a front end build (index.html), got ${opts.webRoot}`,
          )
          process.exitCode = 2
          return
        }
        const { createSimServer } = await import('../../sim/index.js')
        const sim = await createSimServer({
          dataDir: opts.data,
          host: opts.host,
          port,
          speed,
          previewMethod: opts.previewMethod,
          install: {
            ...(opts.comfyuiVersion !== undefined ? { comfyuiVersion: opts.comfyuiVersion } : {}),
            ...(opts.pytorchVersion !== undefined ? { pytorchVersion: opts.pytorchVersion } : {}),
          },
          ...(webRoot !== undefined ? { webRoot } : {}),
        })
        const served = webRoot !== undefined ? `, web root ${webRoot}` : ''
        console.log(
          `ComfyUI stand-in listening on ${sim.url} (data ${sim.dir.base}, speed ${speed}${served})`,
        )
        let stopping = false
        const stop = (signal: string): void => {
          if (stopping) return
          stopping = true
          console.log(`${signal}: closing the stand-in`)
          sim.close().then(
            () => process.exit(0),
            (err: unknown) => {
              console.error(err)
              process.exit(1)
            },
          )
        }
        process.once('SIGINT', () => stop('SIGINT'))
        process.once('SIGTERM', () => stop('SIGTERM'))
      },
    )
}
