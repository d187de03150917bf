// Swagger UI for /docs, served from the swagger-ui-bundle package (no CDN, no inline script).
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
