/**
 * Baidu's OAuth endpoints: the authorization-code exchange (`redirect_uri=oob`),
 * the device-code flow for a server reached over SSH, and the refresh grant.
 *
 * Every answer is checked for the `{error, error_description}` shape; a
 * token answer without `netdisk` in its scope is refused, since file calls
 * would then fail with errno -6, and one without a scope is taken with a
 * warning. Only such an answer is a refusal: a call
 * that gets no answer within `timeoutMs`, a broken connection, a server
 * error or a body that is not JSON is a `retry` StorageError, never "log in
 * again". Log lines carry the path and the grant, never the query.
 */

import { AuthRequiredError, StorageError } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { Credentials } from "./credentials.ts";
import { BaiduNetworkError, scrubText } from "./errors.ts";
import { encodeParams } from "./http.ts";

export interface OAuthContext {
  fetch: typeof fetch;
  /** Base address of the OAuth host, e.g. https://openapi.baidu.com. */
  oauthBase: string;
  appKey: string;
  secretKey: string;
  log: Logger;
  /** How long one OAuth call may take (default 30 s). */
  timeoutMs?: number;
}

export const OAUTH_TIMEOUT_MS = 30_000;

export interface TokenAnswer {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  scope?: string;
}

export interface DeviceCode {
  deviceCode: string;
  userCode: string;
  verificationUrl: string;
  qrcodeUrl?: string;
  expiresIn: number;
  interval: number;
}

/** The address a person opens to get an authorization code. */
export function authorizeUrl(ctx: OAuthContext): string {
  const q = encodeParams({
    response_type: "code",
    client_id: ctx.appKey,
    redirect_uri: "oob",
    scope: "basic,netdisk",
    display: "page",
  });
  return `${trim(ctx.oauthBase)}/oauth/2.0/authorize?${q}`;
}

/** Exchanges an authorization code for tokens. */
export async function exchangeCode(
  ctx: OAuthContext,
  code: string,
): Promise<TokenAnswer> {
  const answer = await tokenCall(ctx, "authorization_code", {
    code,
    redirect_uri: "oob",
  });
  if ("error" in answer) {
    throw new AuthRequiredError(
      `Baidu did not accept the authorization code: ${answer.error}${
        answer.description ? ` (${answer.description})` : ""
      }`,
      {
        hint: "codes work once and for 10 minutes; run " +
          "'image-agent baidu login' again for a new one",
      },
    );
  }
  return answer;
}

/** Uses a refresh token; Baidu answers with a new pair and kills the old one. */
export async function refreshGrant(
  ctx: OAuthContext,
  refreshToken: string,
): Promise<TokenAnswer> {
  const answer = await tokenCall(ctx, "refresh_token", {
    refresh_token: refreshToken,
  });
  if ("error" in answer) {
    throw new AuthRequiredError(
      `The Baidu login has expired or was revoked (refresh refused: ${answer.error}); log in again`,
    );
  }
  return answer;
}

/** Starts the device-code flow. */
export async function requestDeviceCode(
  ctx: OAuthContext,
): Promise<DeviceCode> {
  const q = encodeParams({
    response_type: "device_code",
    client_id: ctx.appKey,
    scope: "basic,netdisk",
  });
  const { status, body } = await send(ctx, "/oauth/2.0/device/code", q);
  const b = body as Record<string, unknown>;
  if (status >= 400 || typeof b.error === "string" || !b.device_code) {
    throw new StorageError(
      `Baidu refused to start the device login: ${
        scrubText(String(b.error ?? `HTTP ${status}`))
      }`,
      "stop",
      { hint: "check backup.baidu.appKey in the config" },
    );
  }
  return {
    deviceCode: String(b.device_code),
    userCode: String(b.user_code),
    verificationUrl: String(b.verification_url),
    qrcodeUrl: b.qrcode_url ? String(b.qrcode_url) : undefined,
    expiresIn: Number(b.expires_in ?? 1800),
    interval: Number(b.interval ?? 5),
  };
}

/** One poll of the device flow: tokens, or the OAuth error string. */
export async function pollDeviceToken(
  ctx: OAuthContext,
  deviceCode: string,
): Promise<TokenAnswer | { error: string; description?: string }> {
  return await tokenCall(ctx, "device_token", { code: deviceCode });
}

/** Turns a token answer into what is saved, refusing a scope without netdisk. */
export function toCredentials(
  answer: TokenAnswer,
  appKey: string,
  now: Date,
): Credentials {
  if (answer.scope !== undefined && !/\bnetdisk\b/.test(answer.scope)) {
    throw new AuthRequiredError(
      `The Baidu login was granted without Netdisk access (scope "${answer.scope}")`,
      { hint: "log in again and allow access to Netdisk files" },
    );
  }
  return {
    accessToken: answer.access_token,
    refreshToken: answer.refresh_token,
    expiresAt: new Date(now.getTime() + answer.expires_in * 1000)
      .toISOString(),
    scope: answer.scope ?? "",
    appKey,
    savedAt: now.toISOString(),
  };
}

async function tokenCall(
  ctx: OAuthContext,
  grant: string,
  params: Record<string, string>,
): Promise<TokenAnswer | { error: string; description?: string }> {
  const q = encodeParams({
    grant_type: grant,
    ...params,
    client_id: ctx.appKey,
    client_secret: ctx.secretKey,
  });
  const { status, body } = await send(ctx, "/oauth/2.0/token", q, grant);
  const b = (body ?? {}) as Record<string, unknown>;
  if (typeof b.error === "string") {
    return {
      error: b.error,
      description: typeof b.error_description === "string"
        ? scrubText(b.error_description)
        : undefined,
    };
  }
  if (status >= 400 || typeof b.access_token !== "string") {
    return { error: `HTTP ${status}` };
  }
  if (typeof b.refresh_token !== "string" || b.refresh_token === "") {
    return { error: "no refresh token in the answer" };
  }
  if (typeof b.scope !== "string") {
    ctx.log.warn(
      "Baidu's login answer does not say what access it grants; if file calls then fail with error -6, log in again and allow access to Netdisk files",
    );
  }
  return {
    access_token: b.access_token,
    refresh_token: b.refresh_token,
    expires_in: Number(b.expires_in ?? 2592000),
    scope: typeof b.scope === "string" ? b.scope : undefined,
  };
}

async function send(
  ctx: OAuthContext,
  path: string,
  query: string,
  note = "",
): Promise<{ status: number; body: unknown }> {
  const started = Date.now();
  const timeoutMs = ctx.timeoutMs ?? OAUTH_TIMEOUT_MS;
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new Error(`no answer in ${timeoutMs / 1000} s`)),
    timeoutMs,
  );
  let status: number;
  let text: string;
  try {
    const res = await ctx.fetch(`${trim(ctx.oauthBase)}${path}?${query}`, {
      signal: controller.signal,
    });
    status = res.status;
    text = await res.text();
  } catch (err) {
    throw new StorageError(
      new BaiduNetworkError("the login", err).message,
      "retry",
    );
  } finally {
    clearTimeout(timer);
  }
  ctx.log.debug(
    `baidu GET ${path}${note ? ` (${note})` : ""} ${status} ${
      Date.now() - started
    }ms`,
  );
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!body || typeof body !== "object" || status >= 500) {
    // Not a refusal: an HTML error page or a cut answer says nothing about
    // the tokens, so the caller tries again later instead of asking for a
    // new login.
    throw new StorageError(
      `Cannot reach Baidu Netdisk for the login: the server answered HTTP ${status}${
        body && typeof body === "object" ? "" : " with a body that is not JSON"
      }`,
      "retry",
    );
  }
  return { status, body };
}

function trim(base: string): string {
  return base.replace(/\/+$/, "");
}
