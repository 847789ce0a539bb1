/**
 * The Baidu login kept on disk: `baidu-credentials.json` in `state.dir`.
 *
 * The file is written atomically (a temp file created with mode 0600,
 * fsynced, renamed over the old one, and the folder fsynced), so a crash
 * never leaves half a token behind and a rotated refresh token is never
 * lost. On POSIX a file that others could read is refused, with the command
 * that fixes it; nothing here ever prints a token.
 */

import { dirname, join } from "node:path";
import { StorageError } from "../../errors.ts";
import { isNotFound, randomSuffix, syncDir, writeAll } from "../../fsutil.ts";

export const CREDENTIALS_FILE = "baidu-credentials.json";

export interface Credentials {
  accessToken: string;
  refreshToken: string;
  /** ISO time the access token stops working. */
  expiresAt: string;
  scope: string;
  /** The app key the tokens were issued to. */
  appKey: string;
  savedAt: string;
}

export function credentialsPath(stateDir: string): string {
  return join(stateDir, CREDENTIALS_FILE);
}

/** The saved login, or null when there is none. */
export async function readCredentials(
  file: string,
): Promise<Credentials | null> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(file);
  } catch (err) {
    if (isNotFound(err)) return null;
    throw err;
  }
  checkMode(file, info);
  let parsed: Partial<Credentials>;
  try {
    parsed = JSON.parse(await Deno.readTextFile(file));
  } catch {
    throw new StorageError(
      `The Baidu credentials file "${file}" is damaged`,
      "stop",
      { hint: "run 'image-agent baidu login --device' to write a new one" },
    );
  }
  if (!parsed.accessToken || !parsed.refreshToken || !parsed.expiresAt) {
    throw new StorageError(
      `The Baidu credentials file "${file}" is incomplete`,
      "stop",
      { hint: "run 'image-agent baidu login --device' to write a new one" },
    );
  }
  return {
    scope: "",
    appKey: "",
    savedAt: "",
    ...parsed,
  } as Credentials;
}

function checkMode(file: string, info: Deno.FileInfo): void {
  if (Deno.build.os === "windows" || info.mode === null) return;
  const mode = info.mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new StorageError(
      `The Baidu credentials file "${file}" can be read by other users (mode ${
        mode.toString(8).padStart(4, "0")
      }); refusing to use it`,
      "stop",
      { hint: `run 'chmod 600 ${file}', or log in again` },
    );
  }
}

/** Replaces the saved login in one atomic step. */
export async function writeCredentials(
  file: string,
  credentials: Credentials,
): Promise<void> {
  const dir = dirname(file);
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = join(dir, `.${CREDENTIALS_FILE}.${randomSuffix()}`);
  try {
    const out = await Deno.open(temp, {
      write: true,
      createNew: true,
      mode: 0o600,
    });
    try {
      if (Deno.build.os !== "windows") await Deno.chmod(temp, 0o600);
      const text = JSON.stringify(credentials, null, 2) + "\n";
      await writeAll(out, new TextEncoder().encode(text));
      await out.sync();
    } finally {
      out.close();
    }
    await Deno.rename(temp, file);
    syncDir(dir);
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw new StorageError(
      `Cannot save the Baidu login to "${file}": ${
        err instanceof Error ? err.message : String(err)
      }`,
      "stop",
    );
  }
}

/** Forgets the saved login; true when there was one. */
export async function removeCredentials(file: string): Promise<boolean> {
  try {
    await Deno.remove(file);
    syncDir(dirname(file));
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}
