"""Reading a bundle's tables and drawing them: shared by the HTML report and the dashboard."""
