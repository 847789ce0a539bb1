/**
 * Hands out the current access token and refreshes it: before it expires
 * (a day before for Baidu's 30-day tokens, half way for short-lived ones),
 * and once whenever the API says it is expired or invalid.
 *
 * Only one refresh runs at a time; callers holding the old token wait for it
 * and then use the new one (Baidu kills the old access token when it issues
 * a new one, so every part in flight must switch). The rotated refresh token
 * is saved before the new access token is handed out: a crash right after a
 * refresh must not lose the only refresh token that still works. A refused
 * refresh is an `AuthRequiredError`, which stops the run with a login hint.
 */

import { AuthRequiredError } from "../../errors.ts";
import type { Clock } from "../../clock.ts";
import {
  type Credentials,
  readCredentials,
  writeCredentials,
} from "./credentials.ts";
import { type OAuthContext, refreshGrant, toCredentials } from "./oauth.ts";

/** Refresh at most this long before the access token runs out. */
export const REFRESH_MARGIN_MS = 24 * 60 * 60 * 1000;
/** A token younger than this is refreshed only once the API refuses it. */
export const MIN_REFRESH_AGE_MS = 60 * 1000;

/**
 * Whether to refresh a token the API has not refused yet. The margin is a
 * day, or half the token's lifetime when that is shorter: a token issued
 * for an hour refreshed with a day's margin would be refreshed on every
 * call, and each refresh kills the token the parts in flight hold. A login
 * saved without `savedAt` (older files) counts as a 30-day one.
 */
export function refreshDue(c: Credentials, now: number): boolean {
  const expires = Date.parse(c.expiresAt);
  const saved = Date.parse(c.savedAt);
  if (!Number.isFinite(expires)) return true;
  const lifetime = Number.isFinite(saved) ? expires - saved : 30 * 86400_000;
  const margin = Math.min(REFRESH_MARGIN_MS, Math.max(0, lifetime / 2));
  if (expires - now > margin) return false;
  return !(Number.isFinite(saved) && now - saved < MIN_REFRESH_AGE_MS);
}

export interface TokenSource {
  /** A token that is valid now, as far as the client knows. */
  token(): Promise<string>;
  /** Called after the API refused `stale`; returns the token to retry with. */
  refreshAfter(stale: string): Promise<string>;
}

export class TokenManager implements TokenSource {
  readonly file: string;
  #ctx: OAuthContext;
  #clock: Clock;
  #current: Credentials | null = null;
  #refreshing: Promise<Credentials> | null = null;

  constructor(file: string, ctx: OAuthContext, clock: Clock) {
    this.file = file;
    this.#ctx = ctx;
    this.#clock = clock;
  }

  async #load(): Promise<Credentials> {
    if (this.#current) return this.#current;
    const saved = await readCredentials(this.file);
    if (!saved) {
      throw new AuthRequiredError(
        `Not logged in to Baidu Netdisk (no ${this.file})`,
      );
    }
    if (saved.appKey && saved.appKey !== this.#ctx.appKey) {
      throw new AuthRequiredError(
        `The saved Baidu login belongs to another app key than backup.baidu.appKey`,
      );
    }
    this.#current = saved;
    return saved;
  }

  // TODO: when a refresh ahead of time fails for a network reason while the
  // token still works, keep using it and wait a while before the next try,
  // instead of failing the call; worth it if OAuth outages show up in runs.
  async token(): Promise<string> {
    const c = await this.#load();
    const now = this.#clock.now().getTime();
    if (!refreshDue(c, now)) return c.accessToken;
    const left = Date.parse(c.expiresAt) - now;
    this.#ctx.log.info(
      left > 0
        ? "The Baidu access token expires soon; refreshing it"
        : "The Baidu access token has expired; refreshing it",
    );
    return (await this.#refresh(c.accessToken)).accessToken;
  }

  async refreshAfter(stale: string): Promise<string> {
    const c = await this.#load();
    if (c.accessToken !== stale) return c.accessToken;
    this.#ctx.log.info("Baidu refused the access token; refreshing it");
    return (await this.#refresh(stale)).accessToken;
  }

  /** The saved login (without loading it twice), for whoami and tests. */
  async credentials(): Promise<Credentials> {
    return await this.#load();
  }

  #refresh(stale: string): Promise<Credentials> {
    if (!this.#refreshing) {
      this.#refreshing = this.#doRefresh(stale).finally(() => {
        this.#refreshing = null;
      });
    }
    return this.#refreshing;
  }

  async #doRefresh(stale: string): Promise<Credentials> {
    // Another process (a manual run beside the timer) may have rotated the
    // pair already; its refresh token is then the only one that works.
    const onDisk = await readCredentials(this.file);
    if (onDisk && onDisk.accessToken !== stale) {
      this.#current = onDisk;
      return onDisk;
    }
    const c = onDisk ?? (await this.#load());
    const answer = await refreshGrant(this.#ctx, c.refreshToken).catch(
      (err) => {
        this.#current = null;
        throw err;
      },
    );
    const next = toCredentials(answer, this.#ctx.appKey, this.#clock.now());
    await writeCredentials(this.file, next);
    this.#current = next;
    return next;
  }
}
