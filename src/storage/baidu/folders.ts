/**
 * The folders a copy goes into, made before its file is sent.
 *
 * Baidu does not say whether precreate makes missing parent folders, and a
 * server that does not refuses the file as not found (errno -9 or 31063),
 * which would fail every new order. So the folder of each copy is made
 * first with create `isdir=1` (3.7): the order's folder, and only when
 * Baidu says its parent is missing, the parent too, and so on up to the
 * app's own `/apps/<app>`. An existing folder answers -8 ("exists"), which
 * is taken at its word; what was made or found is remembered for the run,
 * so the backup folder costs one call per run, not one per order.
 *
 * A -8 can also mean a *file* of that name is in the way. That is not
 * looked into up front (it would cost a listing of the parent, thousands of
 * orders long, for every order already seen once), because the file's
 * precreate then fails as not found. On that, `renew` forgets what it
 * knew, makes the folders again, and checks a -8 against the parent's
 * listing: a file in the way fails the upload with a message that says so.
 */

import { StorageError } from "../../errors.ts";
import type { BaiduApi } from "./api.ts";
import { BaiduApiError } from "./errors.ts";
import { parentOf } from "./paths.ts";

export class BaiduFolders {
  #api: BaiduApi;
  #made = new Map<string, Promise<void>>();

  constructor(api: BaiduApi) {
    this.#api = api;
  }

  /** Makes `dir` (and any parent Baidu says is missing), once per run. */
  ensure(dir: string, signal?: AbortSignal): Promise<void> {
    return this.#once(dir, false, signal);
  }

  /**
   * After Baidu said the folder of a file is missing although it was made
   * or found this run: makes `dir` and its parents again, checking that a
   * name Baidu says exists is a folder.
   */
  renew(dir: string, signal?: AbortSignal): Promise<void> {
    for (let d = dir; isMakeable(d); d = parentOf(d).dir) this.#made.delete(d);
    return this.#once(dir, true, signal);
  }

  #once(dir: string, check: boolean, signal?: AbortSignal): Promise<void> {
    let made = this.#made.get(dir);
    if (!made) {
      made = this.#make(dir, check, signal);
      this.#made.set(dir, made);
      const mine = made;
      mine.catch(() => {
        if (this.#made.get(dir) === mine) this.#made.delete(dir);
      });
    }
    return made;
  }

  async #make(dir: string, check: boolean, signal?: AbortSignal) {
    if (await this.#create(dir, check, signal)) return;
    const parent = parentOf(dir).dir;
    if (!isMakeable(parent)) {
      throw new StorageError(
        `Cannot make the folder "${dir}" on Baidu Netdisk: Baidu says its parent "${parent}" is missing`,
        "retry",
      );
    }
    await this.#once(parent, check, signal);
    if (!(await this.#create(dir, check, signal))) {
      throw new StorageError(
        `Cannot make the folder "${dir}" on Baidu Netdisk: Baidu still says its parent is missing`,
        "retry",
      );
    }
  }

  /** True when `dir` is there now; false when its parent is missing. */
  async #create(
    dir: string,
    check: boolean,
    signal?: AbortSignal,
  ): Promise<boolean> {
    try {
      await this.#api.createFolder(dir, signal);
      return true;
    } catch (err) {
      if (!(err instanceof BaiduApiError)) throw err;
      if (err.kind === "not_found") return false;
      if (err.kind !== "exists") throw err;
    }
    if (check) await this.#checkFolder(dir, signal);
    return true;
  }

  async #checkFolder(dir: string, signal?: AbortSignal): Promise<void> {
    const { dir: parent, name } = parentOf(dir);
    const entry = (await this.#api.list(parent, signal)).find((e) =>
      e.path === dir || e.name === name
    );
    if (entry?.isDir) return;
    throw new StorageError(
      entry
        ? `Cannot make the folder "${dir}" on Baidu Netdisk: a file of that name is in the way; move or delete it on Baidu Netdisk`
        : `Cannot make the folder "${dir}" on Baidu Netdisk: Baidu says it exists but does not list it`,
      "retry",
    );
  }
}

/** Folders an app may make: `/apps/<app>` and anything below it. */
function isMakeable(dir: string): boolean {
  return /^\/apps\/[^/]+(\/.+)?$/.test(dir);
}
