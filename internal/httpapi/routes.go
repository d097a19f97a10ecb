package httpapi

import (
	"net/http"
	"time"

	"github.com/flotilla-ota/flotilla/rollout"
)

func (s *Server) addRoutes() {
	s.handle("GET /api/v1/openapi.json", http.HandlerFunc(s.handleOpenAPI))
	s.handle("GET /api/v1/info", s.authed(s.handleInfo))

	s.handle("POST /api/v1/tenants", s.authed(s.handleCreateTenant))
	s.handle("GET /api/v1/tenants", s.authed(s.handleListTenants))
	s.handle("GET /api/v1/tenants/{tenant}", s.authed(s.handleGetTenant))
	s.handle("PATCH /api/v1/tenants/{tenant}", s.authed(s.handlePatchTenant))

	s.handle("POST /api/v1/tokens", s.authed(s.handleCreateToken))
	s.handle("GET /api/v1/tokens", s.authed(s.handleListTokens))
	s.handle("DELETE /api/v1/tokens/{id}", s.authed(s.handleRevokeToken))

	s.handle("GET /api/v1/artifacts", s.authed(s.handleListArtifacts))
	s.handle("PUT /api/v1/artifacts/{name}/{version}", s.authed(s.handleUploadArtifact))
	s.handle("GET /api/v1/artifacts/{name}/{version}", s.authed(s.handleGetArtifact))
	s.handle("PATCH /api/v1/artifacts/{name}/{version}", s.authed(s.handlePatchArtifact))
	s.handle("DELETE /api/v1/artifacts/{name}/{version}", s.authed(s.handleDeleteArtifact))
	s.handle("GET /api/v1/artifacts/{name}/{version}/content", s.authed(s.handleArtifactContent))

	s.handle("POST /api/v1/modules", s.authed(s.handleCreateModule))
	s.handle("GET /api/v1/modules", s.authed(s.handleListModules))
	s.handle("GET /api/v1/modules/{id}", s.authed(s.handleGetModule))
	s.handle("DELETE /api/v1/modules/{id}", s.authed(s.handleDeleteModule))
	s.handle("PUT /api/v1/modules/{id}/files/{filename}", s.authed(s.handleUploadModuleFile))
	s.handle("DELETE /api/v1/modules/{id}/files/{filename}", s.authed(s.handleDeleteModuleFile))
	s.handle("POST /api/v1/releases", s.authed(s.handleCreateRelease))

	s.handle("GET /api/v1/fleet", s.authed(s.handleFleet))
	s.handle("POST /api/v1/devices", s.authed(s.handleCreateDevice))
	s.handle("GET /api/v1/devices", s.authed(s.handleListDevices))
	s.handle("GET /api/v1/devices/{id}", s.authed(s.handleGetDevice))
	s.handle("PATCH /api/v1/devices/{id}", s.authed(s.handlePatchDevice))
	s.handle("DELETE /api/v1/devices/{id}", s.authed(s.handleDeleteDevice))
	s.handle("POST /api/v1/devices/{id}/token", s.authed(s.handleRotateDeviceToken))
	s.handle("POST /api/v1/devices/{id}/node-token", s.authed(s.handleRotateNodeToken))
	s.handle("POST /api/v1/devices/{id}/deployments", s.authed(s.handleAssignDeployment))
	s.handle("GET /api/v1/devices/{id}/deployments", s.authed(s.handleListDeployments))
	s.handle("GET /api/v1/devices/{id}/deployments/{did}", s.authed(s.handleGetDeployment))
	s.handle("POST /api/v1/devices/{id}/deployments/{did}/cancel", s.authed(s.handleCancelDeployment))
	s.handle("POST /api/v1/devices/{id}/updates", detached(time.Minute, s.authed(s.handleStartPushUpdate)))
	s.handle("GET /api/v1/devices/{id}/updates/{uid}", s.authed(s.handlePushUpdateStatus))
	s.handle("POST /api/v1/devices/{id}/updates/{uid}/abort", s.authed(s.handleAbortPushUpdate))

	s.handle("POST /api/v1/rollouts", s.authed(s.handleCreateRollout))
	s.handle("POST /api/v1/rollouts/preview", s.authed(s.handlePreviewRollout))
	s.handle("GET /api/v1/rollouts", s.authed(s.handleListRollouts))
	s.handle("GET /api/v1/rollouts/{id}", s.authed(s.handleGetRollout))
	s.handle("DELETE /api/v1/rollouts/{id}", s.authed(s.handleDeleteRollout))
	s.handle("POST /api/v1/rollouts/{id}/start", s.authed(s.handleStartRollout))
	s.handle("POST /api/v1/rollouts/{id}/pause", s.authed(s.rolloutOp(rollout.OpPause)))
	s.handle("POST /api/v1/rollouts/{id}/resume", s.authed(s.rolloutOp(rollout.OpResume)))
	s.handle("POST /api/v1/rollouts/{id}/abort", s.authed(s.rolloutOp(rollout.OpAbort)))
	s.handle("POST /api/v1/rollouts/{id}/retry", s.authed(s.rolloutOp(rollout.OpRetry)))
	s.handle("POST /api/v1/rollouts/{id}/next-wave", s.authed(s.rolloutOp(rollout.OpNextWave)))
	s.handle("GET /api/v1/rollouts/{id}/runs", s.authed(s.handleRolloutRuns))
	s.handle("GET /api/v1/rollouts/{id}/devices", s.authed(s.handleRolloutDevices))
	s.handle("GET /api/v1/rollouts/{id}/history", s.authed(s.handleRolloutHistory))

	s.handle("POST /api/v1/policies", s.authed(s.handleCreatePolicy))
	s.handle("GET /api/v1/policies", s.authed(s.handleListPolicies))
	s.handle("GET /api/v1/policies/{name}", s.authed(s.handleGetPolicy))
	s.handle("PUT /api/v1/policies/{name}", s.authed(s.handlePutPolicy))
	s.handle("DELETE /api/v1/policies/{name}", s.authed(s.handleDeletePolicy))

	s.handle("GET /api/v1/channels", s.authed(s.handleListChannels))
	s.handle("GET /api/v1/channels/{name}", s.authed(s.handleGetChannel))
	s.handle("PUT /api/v1/channels/{name}", s.authed(s.handlePutChannel))
	s.handle("DELETE /api/v1/channels/{name}", s.authed(s.handleDeleteChannel))

	s.handle("GET /api/v1/trust", s.authed(s.handleTrustStatus))
	s.handle("POST /api/v1/trust/metadata", s.authed(s.handlePublishTrust))
	s.handle("GET /api/v1/trust/metadata/{file}", s.authed(s.handleTrustFile))

	s.handle("GET /api/v1/events", s.authed(s.handleEvents))

	// The SPORE gateway's API, as thin adapters, for tools written for it.
	s.handle("GET /api/cluster/node/versions", s.spore(s.handleSporeNodeVersions))
	s.handle("POST /api/rollout", s.spore(s.handleSporeRollout))
	s.handle("GET /api/registry/health", s.spore(s.handleSporeHealth))
	s.handle("GET /api/registry/firmware", s.spore(s.handleSporeListFirmware))
	s.handle("POST /api/registry/firmware", s.spore(s.handleSporeUploadFirmware))
	s.handle("GET /api/registry/firmware/{name}/{version}", s.spore(s.handleArtifactContent)) // the same bytes as /api/v1
	s.handle("PUT /api/registry/firmware/{name}/{version}", s.spore(s.handleSporeUpdateFirmware))

	s.handle("/api/", http.HandlerFunc(s.handleNotFound))
}
