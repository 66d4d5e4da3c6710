/**
 * Debian's Chromium through playwright-core, launched the way the browser tests need it on CI: headless, no
 * sandbox (containers), no GPU, and nothing that talks to the network by itself.
 */
import { existsSync } from 'node:fs'
import type { BrowserContext } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'

/** Why browser tests cannot run here, or undefined when they can. */
export const chromiumMissing: string | undefined = existsSync(CHROMIUM)
  ? undefined
  : `Debian's chromium is not at ${CHROMIUM} (apt-get install -y chromium)`

/** A fresh persistent context in `profileDir` (a new temporary folder per test file). */
export async function launchChromium(
  profileDir: string,
  options: { viewport?: { width: number; height: number }; timezoneId?: string; locale?: string } = {},
): Promise<BrowserContext> {
  const { chromium } = await import('playwright-core')
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: options.viewport ?? { width: 1280, height: 800 },
    ...(options.timezoneId ? { timezoneId: options.timezoneId } : {}),
    ...(options.locale ? { locale: options.locale } : {}),
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}
