// Public API. See README.md "Library API".
export { createGateway, Gateway } from './gateway.js';
export type {
  CloseOptions,
  ConnectionErrorInfo,
  GatewayEvents,
  GatewayStats,
  TunnelCloseInfo,
  TunnelInfo,
} from './gateway.js';
export type { ListenAddress } from './listen/listeners.js';
export type { ListenSpec } from './gateway.js';
export { DEFAULTS, resolveConfig } from './config.js';
export type { GatewayConfig, LocationConfig, ServerConfig } from './config.js';
export { ConfigError, ERROR_CODES, WsgateError } from './core/errors.js';
export type { ErrorCode, ErrorSide } from './core/errors.js';
export { createStreamLogger } from './core/log.js';
export type { Logger, LogLevel } from './core/log.js';
export { TimerWheel, WheelTimer } from './core/timer-wheel.js';
export type { TimerOwner, TimerWheelOptions } from './core/timer-wheel.js';
export type { TunnelCloseReason } from './tunnel/tunnel.js';
export { fastPaths } from './io/node-internals.js';
export { probeFastPaths } from './io/probe.js';
export type { FastPaths, WriteContract } from './io/node-internals.js';
