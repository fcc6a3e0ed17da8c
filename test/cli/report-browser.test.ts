/**
 * The report as a person sees it: headless Chromium opens the generated page (a
 * DevTools-protocol client over --remote-debugging-pipe), and the test fails on any
 * console error or exception, any request beyond the file itself, a missing or empty
 * plot, or a page wider than the window. A full-page screenshot is saved and its path
 * printed. Skipped with a reason when Chromium is absent, except under CI=true.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { reportCommand } from '../../src/cli/commands/report.ts';
import { invoke } from '../../src/cli/dispatch.ts';
import { makeReportRuns, quietIo } from '../helpers/report-runs.ts';
import { tmpDir } from '../helpers/shared.ts';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

function skipReason(): string | false {
  if (existsSync(CHROMIUM)) return false;
  if (process.env.CI === 'true') return false; // the test itself then fails, loudly
  return `Chromium not found at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`;
}

interface Message {
  id?: number;
  method?: string;
  sessionId?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
}

/** A DevTools-protocol client over Chromium's pipe: JSON messages ended by NUL. */
class Cdp {
  private nextId = 1;
  private pending = new Map<
    number,
    { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }
  >();
  private listeners = new Set<(m: Message) => void>();
  private buffer = '';

  constructor(
    private readonly input: Writable,
    output: Readable,
  ) {
    output.setEncoding('utf8');
    output.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (;;) {
        const end = this.buffer.indexOf('\0');
        if (end < 0) break;
        const msg = JSON.parse(this.buffer.slice(0, end)) as Message;
        this.buffer = this.buffer.slice(end + 1);
        const waiter = msg.id === undefined ? undefined : this.pending.get(msg.id);
        if (waiter && msg.id !== undefined) {
          this.pending.delete(msg.id);
          if (msg.error) waiter.reject(new Error(msg.error.message));
          else waiter.resolve(msg.result ?? {});
        } else for (const l of this.listeners) l(msg);
      }
    });
  }

  send(method: string, params: object = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    this.input.write(`${JSON.stringify({ id, method, params, sessionId })}\0`);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${method}: no answer in 30 s`)), 30_000);
      this.pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  on(listener: (m: Message) => void): void {
    this.listeners.add(listener);
  }

  /** Resolves with the first event `method` (of the session) seen from now on. */
  waitFor(method: string, sessionId: string, ms = 30_000): Promise<Message> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${method} in ${ms} ms`)), ms);
      const l = (m: Message) => {
        if (m.method === method && m.sessionId === sessionId) {
          clearTimeout(timer);
          this.listeners.delete(l);
          resolve(m);
        }
      };
      this.listeners.add(l);
    });
  }
}

interface FigureInfo {
  id: string;
  svgs: number;
  width: number;
  height: number;
  marks: number;
}

test(
  'the report in headless Chromium: no console error, every plot drawn',
  {
    skip: skipReason(),
    timeout: 90_000,
  },
  async (t) => {
    assert.ok(existsSync(CHROMIUM), `CI=true and no Chromium at ${CHROMIUM}`);
    const root = tmpDir('actsparse-report-browser-');
    const runs = await makeReportRuns(root);
    const page = join(root, 'report.html');
    await invoke(reportCommand, [runs.full, runs.second, '--out', page], quietIo);
    const expectedFigures = [...readFileSync(page, 'utf8').matchAll(/<figure class="plot"/g)]
      .length;
    assert.equal(expectedFigures, 12);

    const child: ChildProcess = spawn(
      CHROMIUM,
      [
        '--headless=new',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-extensions',
        '--no-first-run',
        '--no-default-browser-check',
        `--user-data-dir=${join(root, 'profile')}`,
        '--remote-debugging-pipe',
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      stderr = (stderr + s).slice(-4000);
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      const cdp = new Cdp(child.stdio[3] as Writable, child.stdio[4] as Readable);
      const { targetId } = await cdp.send('Target.createTarget', { url: 'about:blank' });
      const { sessionId } = (await cdp.send('Target.attachToTarget', {
        targetId,
        flatten: true,
      })) as { sessionId: string };

      // Everything the page reports as an error, and every request it makes.
      const errors: string[] = [];
      const requests: string[] = [];
      cdp.on((m) => {
        if (m.sessionId !== sessionId || !m.params) return;
        const p = m.params;
        if (m.method === 'Runtime.exceptionThrown') errors.push(`exception: ${JSON.stringify(p)}`);
        if (m.method === 'Runtime.consoleAPICalled' && (p.type === 'error' || p.type === 'assert'))
          errors.push(`console.${p.type}: ${JSON.stringify(p.args)}`);
        if (m.method === 'Log.entryAdded') {
          const e = p.entry as { level: string; text: string; url?: string };
          if (e.level === 'error') errors.push(`log: ${e.text} ${e.url ?? ''}`);
        }
        if (m.method === 'Network.requestWillBeSent')
          requests.push((p.request as { url: string }).url);
      });
      for (const domain of ['Runtime', 'Log', 'Page', 'Network'])
        await cdp.send(`${domain}.enable`, {}, sessionId);
      await cdp.send(
        'Emulation.setDeviceMetricsOverride',
        { width: 1280, height: 900, deviceScaleFactor: 1, mobile: false },
        sessionId,
      );
      const url = pathToFileURL(page).href;
      const loaded = cdp.waitFor('Page.loadEventFired', sessionId);
      await cdp.send('Page.navigate', { url }, sessionId);
      await loaded;

      const evaluate = async <T>(expression: string): Promise<T> => {
        const r = (await cdp.send(
          'Runtime.evaluate',
          { expression, returnByValue: true },
          sessionId,
        )) as { result: { value: T }; exceptionDetails?: unknown };
        assert.equal(r.exceptionDetails, undefined, JSON.stringify(r.exceptionDetails));
        return r.result.value;
      };
      const figures = await evaluate<
        FigureInfo[]
      >(`[...document.querySelectorAll('figure.plot')].map((f) => {
      const svg = f.querySelector('svg');
      const r = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
      return { id: f.dataset.plot, svgs: f.querySelectorAll('svg').length, width: r.width,
        height: r.height, marks: svg ? svg.querySelectorAll('.role-mark > *').length : 0 };
    })`);
      const page2 = await evaluate<{
        scripts: number;
        scrollWidth: number;
        innerWidth: number;
        height: number;
      }>(
        '({ scripts: document.scripts.length, scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, height: document.documentElement.scrollHeight })',
      );

      // A full-page screenshot, for a person to look at.
      const shot = (await cdp.send(
        'Page.captureScreenshot',
        {
          format: 'png',
          captureBeyondViewport: true,
          clip: { x: 0, y: 0, width: 1280, height: page2.height, scale: 1 },
        },
        sessionId,
      )) as { data: string };
      const png = join(root, 'report.png');
      writeFileSync(png, Buffer.from(shot.data, 'base64'));
      t.diagnostic(`screenshot: ${png} (1280x${page2.height})`);

      // The listener works: a probe error after the checks is seen.
      const probe = cdp.waitFor('Runtime.consoleAPICalled', sessionId);
      await evaluate('console.error("probe")');
      await probe;
      assert.equal(errors.pop()?.includes('probe'), true, 'the console probe was not seen');

      assert.deepEqual(errors, [], `errors in the page:\n${errors.join('\n')}`);
      assert.deepEqual(requests, [url], 'the page requested something beyond itself');
      assert.equal(page2.scripts, 0);
      assert.ok(
        page2.scrollWidth <= page2.innerWidth,
        `page wider than the window: ${page2.scrollWidth} > ${page2.innerWidth}`,
      );
      assert.equal(figures.length, expectedFigures, 'figures in the DOM');
      for (const f of figures) {
        assert.equal(f.svgs, 1, `${f.id}: ${f.svgs} svg`);
        assert.ok(f.width > 150 && f.height > 100, `${f.id}: drawn at ${f.width}x${f.height}`);
        assert.ok(f.marks > 0, `${f.id}: no data marks`);
      }
      const png0 = readFileSync(png);
      assert.equal(png0.readUInt32BE(16), 1280, 'screenshot width');
      await cdp.send('Browser.close').catch(() => {});
    } catch (e) {
      throw new Error(`${(e as Error).message}\nChromium stderr (tail):\n${stderr}`);
    } finally {
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
  },
);
