"""siprec-bridge: a SIPREC Session Recording Server that streams call audio over WebSocket."""
