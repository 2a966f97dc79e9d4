//! The OpenAPI 3.1 document served at `/openapi.json`. Its `operationId`s are the Service
//! API method names; a unit test checks it names every route the server has.

use serde_json::{json, Value};

use service_api::paths;

fn op(id: &str, summary: &str, req: &str, resp: &str, roles: &str) -> Value {
    json!({
        "post": {
            "operationId": id,
            "summary": summary,
            "description": format!("Callers: {roles}. Errors: `{{\"error\":{{\"code\",\"message\"}}}}`."),
            "security": [{ "bearer": [] }],
            "requestBody": {
                "required": true,
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{req}") } } }
            },
            "responses": {
                "200": { "description": "OK", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{resp}") } } } },
                "400": { "$ref": "#/components/responses/Error" },
                "401": { "$ref": "#/components/responses/Error" },
                "403": { "$ref": "#/components/responses/Error" },
                "404": { "$ref": "#/components/responses/Error" },
                "413": { "$ref": "#/components/responses/Error" },
                "422": { "$ref": "#/components/responses/Error" },
                "429": { "$ref": "#/components/responses/Error" }
            }
        }
    })
}

fn u64_schema() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

fn str_schema() -> Value {
    json!({ "type": "string", "maxLength": service_api::MAX_FIELD_LEN })
}

/// The whole document.
pub fn document() -> Value {
    let status = json!({ "type": "string", "enum": service_api::ServiceStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>() });
    let codes = json!([
        "bad_request",
        "payload_too_large",
        "unauthorized",
        "forbidden",
        "auth_failed",
        "channel_inactive",
        "not_found",
        "conflict",
        "invalid",
        "rate_limited",
        "unavailable",
        "internal"
    ]);
    let speed = json!({
        "type": "object",
        "description": "Speed limits in bit/s; download = agent to client.",
        "properties": {
            "minDownloadBps": u64_schema(), "maxDownloadBps": u64_schema(),
            "minUploadBps": u64_schema(), "maxUploadBps": u64_schema()
        }
    });
    let string_map = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "core-lite Service API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Service API of the VPN service module pair (agent and client roles). \
                Usage reports carry cumulative totals: a retried or reordered report never \
                double counts or goes backwards."
        },
        "paths": {
            paths::AUTH_CLIENT: op("AuthClient", "Verify a client key and password", "AuthClientRequest", "AuthClientResponse", "agent (product token)"),
            paths::SET_PRODUCT_CONFIG: op("SetProductConfig", "Store the product config pushed by the server adapter", "SetProductConfigRequest", "SetProductConfigResponse", "agent (product token)"),
            paths::START_SESSION: op("StartSession", "Open a session of a channel", "StartSessionRequest", "StartSessionResponse", "agent (product token), client (client token)"),
            paths::UPDATE_SESSION: op("UpdateSession", "Report cumulative usage; answers the service status", "UpdateSessionRequest", "UpdateSessionResponse", "agent, client"),
            paths::STOP_SESSION: op("StopSession", "Close a session with final cumulative counts", "StopSessionRequest", "StopSessionResponse", "agent, client"),
            paths::GET_ACCESS: op("GetAccess", "The access message for a client key", "GetAccessRequest", "AccessMessage", "client (client token)"),
            format!("{}/{{id}}", paths::ADMIN_CHANNELS): {
                "get": {
                    "operationId": "GetChannel",
                    "summary": "A channel with its status history (admin token)",
                    "security": [{ "bearer": [] }],
                    "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" }, "description": "channel id or client key" }],
                    "responses": {
                        "200": { "description": "OK", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ChannelInfo" } } } },
                        "401": { "$ref": "#/components/responses/Error" },
                        "403": { "$ref": "#/components/responses/Error" },
                        "404": { "$ref": "#/components/responses/Error" }
                    }
                }
            },
            paths::HEALTH: { "get": { "operationId": "Health", "summary": "Liveness", "responses": { "200": { "description": "ok" } } } },
            paths::OPENAPI: { "get": { "operationId": "OpenApi", "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1 JSON" } } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Error": { "description": "Error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            },
            "schemas": {
                "ServiceStatus": status,
                "SpeedLimits": speed,
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message"], "properties": {
                        "code": { "type": "string", "enum": codes },
                        "message": { "type": "string" },
                        "status": { "$ref": "#/components/schemas/ServiceStatus" }
                    } } }
                },
                "AuthClientRequest": { "type": "object", "additionalProperties": false, "required": ["clientKey", "password"],
                    "properties": { "clientKey": str_schema(), "password": str_schema(), "clientAddr": str_schema() } },
                "AuthClientResponse": { "type": "object", "required": ["clientKey", "channelId", "status", "speed"],
                    "properties": { "clientKey": { "type": "string" }, "channelId": { "type": "string" },
                        "status": { "$ref": "#/components/schemas/ServiceStatus" }, "speed": { "$ref": "#/components/schemas/SpeedLimits" } } },
                "SetProductConfigRequest": { "type": "object", "additionalProperties": false, "required": ["config"],
                    "properties": { "config": string_map } },
                "SetProductConfigResponse": { "type": "object", "required": ["productId", "changed"],
                    "properties": { "productId": { "type": "string" }, "changed": { "type": "boolean" } } },
                "StartSessionRequest": { "type": "object", "additionalProperties": false, "required": ["clientKey"],
                    "properties": { "clientKey": str_schema(), "connectionId": str_schema(), "clientAddr": str_schema(), "vpnAddr": str_schema() } },
                "StartSessionResponse": { "type": "object", "required": ["sessionId", "channelId", "status", "speed", "bytesIn", "bytesOut"],
                    "properties": { "sessionId": { "type": "string" }, "channelId": { "type": "string" },
                        "status": { "$ref": "#/components/schemas/ServiceStatus" }, "speed": { "$ref": "#/components/schemas/SpeedLimits" },
                        "bytesIn": u64_schema(), "bytesOut": u64_schema() } },
                "UpdateSessionRequest": { "type": "object", "additionalProperties": false, "required": ["sessionId", "bytesIn", "bytesOut"],
                    "properties": { "sessionId": str_schema(), "bytesIn": u64_schema(), "bytesOut": u64_schema() } },
                "UpdateSessionResponse": { "type": "object", "required": ["sessionId", "status", "bytesIn", "bytesOut", "channelBytes", "unitsUsed"],
                    "properties": { "sessionId": { "type": "string" }, "status": { "$ref": "#/components/schemas/ServiceStatus" },
                        "bytesIn": u64_schema(), "bytesOut": u64_schema(), "channelBytes": u64_schema(), "unitsUsed": u64_schema() } },
                "StopSessionRequest": { "type": "object", "additionalProperties": false, "required": ["sessionId", "bytesIn", "bytesOut"],
                    "properties": { "sessionId": str_schema(), "bytesIn": u64_schema(), "bytesOut": u64_schema() } },
                "StopSessionResponse": { "type": "object", "required": ["sessionId", "status", "bytesIn", "bytesOut", "channelBytes", "unitsUsed", "stopped"],
                    "properties": { "sessionId": { "type": "string" }, "status": { "$ref": "#/components/schemas/ServiceStatus" },
                        "bytesIn": u64_schema(), "bytesOut": u64_schema(), "channelBytes": u64_schema(), "unitsUsed": u64_schema(),
                        "stopped": { "type": "boolean" } } },
                "GetAccessRequest": { "type": "object", "additionalProperties": false, "required": ["clientKey"],
                    "properties": { "clientKey": str_schema() } },
                "AccessMessage": { "type": "object", "required": ["templateHash", "username", "password", "serviceEndpointAddress", "additionalParams"],
                    "properties": { "templateHash": { "type": "string" }, "username": { "type": "string" }, "password": { "type": "string" },
                        "serviceEndpointAddress": { "type": "string" }, "additionalParams": string_map } },
                "ChannelInfo": { "type": "object",
                    "properties": { "channelId": { "type": "string" }, "clientKey": { "type": "string" }, "offeringHash": { "type": "string" },
                        "status": { "$ref": "#/components/schemas/ServiceStatus" }, "deposit": u64_schema(), "bytesTotal": u64_schema(),
                        "unitsUsed": u64_schema(), "openSession": { "type": ["string", "null"] },
                        "history": { "type": "array", "items": { "type": "object", "properties": {
                            "status": { "$ref": "#/components/schemas/ServiceStatus" }, "atMs": { "type": "integer" }, "reason": { "type": "string" } } } } } }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_service_operation() {
        let d = document();
        let mut ids = Vec::new();
        for (_, item) in d["paths"].as_object().expect("paths") {
            for (_, op) in item.as_object().expect("item") {
                ids.push(op["operationId"].as_str().expect("id").to_string());
            }
        }
        for want in [
            "AuthClient",
            "SetProductConfig",
            "StartSession",
            "UpdateSession",
            "StopSession",
            "GetAccess",
        ] {
            assert!(ids.iter().any(|i| i == want), "{want} missing from {ids:?}");
        }
        assert_eq!(d["openapi"], "3.1.0");
    }
}
