// Public API. See README.md "Library API".
export { createGateway, Gateway } from './gateway.js';
export type {
  CloseOptions,
  ConnectionErrorInfo,
  GatewayEvents,
  GatewayStats,
  ListenAddress,
  TunnelCloseInfo,
  TunnelInfo,
} from './gateway.js';
export { DEFAULTS, resolveConfig } from './config.js';
export type { GatewayConfig, LocationConfig, ServerConfig } from './config.js';
export { ConfigError, ERROR_CODES, WsgateError } from './errors.js';
export type { ErrorCode, ErrorSide } from './errors.js';
export { createStreamLogger } from './log.js';
export type { Logger, LogLevel } from './log.js';
export { TimerWheel, WheelTimer } from './timer-wheel.js';
export type { TimerOwner, TimerWheelOptions } from './timer-wheel.js';
export type { TunnelCloseReason } from './tunnel.js';
export { fastPaths, probeFastPaths } from './io/node-internals.js';
export type { FastPaths, WriteContract } from './io/node-internals.js';
