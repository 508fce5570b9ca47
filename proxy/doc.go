// Package proxy is Detour's edge: an L7 (HTTP/1.1, h2c, WebSocket) and L4 (TCP) reverse proxy
// per configured app listener that follows the route table the controller publishes for it,
// forwards to the secondary edge when the local pool is down, and reports itself alive.
package proxy
