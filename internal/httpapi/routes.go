package httpapi

import (
	"net/http"
)

func (s *Server) addRoutes() {
	s.handle("GET /api/v1/openapi.json", http.HandlerFunc(s.handleOpenAPI))

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

	s.handle("POST /api/v1/devices", s.authed(s.handleCreateDevice))
	s.handle("GET /api/v1/devices", s.authed(s.handleListDevices))
	s.handle("GET /api/v1/devices/{id}", s.authed(s.handleGetDevice))
	s.handle("PATCH /api/v1/devices/{id}", s.authed(s.handlePatchDevice))
	s.handle("DELETE /api/v1/devices/{id}", s.authed(s.handleDeleteDevice))
	s.handle("POST /api/v1/devices/{id}/deployments", s.authed(s.handleAssignDeployment))
	s.handle("GET /api/v1/devices/{id}/deployments", s.authed(s.handleListDeployments))
	s.handle("GET /api/v1/devices/{id}/deployments/{did}", s.authed(s.handleGetDeployment))
	s.handle("POST /api/v1/devices/{id}/deployments/{did}/cancel", s.authed(s.handleCancelDeployment))

	s.handle("/api/", http.HandlerFunc(s.handleNotFound))
}
