"""A procurement need and the actors that answer it, written for the tests: three specialists
who each cover one aspect, an actor who only *needs* what the first aspect asks for, and actors
with nothing to offer it. One aspect (ferry hull welding) nobody covers."""

from __future__ import annotations

from typing import Any

from tests.factories import actor_data

NEED_EN = (
    "Tram fleet maintenance.\n\n"
    "The city needs vibration sensors mounted on tram bogies that measure the wear of wheels "
    "and rails. "
    "Machine learning models must forecast component failures from the measurements weeks "
    "ahead. "
    "The forecasts must flow into the depot maintenance planning software through an open "
    "interface. "
    "See annex two. "
    "Underwater welding of the steel hulls of the harbour ferries is also required."
)
NEED_DE = (
    "Instandhaltung der Straßenbahnflotte.\n\n"
    "Die Stadt benötigt Schwingungssensoren an den Drehgestellen der Straßenbahnen, die den "
    "Verschleiß von Rädern und Schienen messen. "
    "Modelle des maschinellen Lernens sollen Ausfälle von Bauteilen aus den Messungen Wochen im "
    "Voraus vorhersagen. "
    "Die Vorhersagen müssen über eine offene Schnittstelle in die Software zur "
    "Instandhaltungsplanung des Depots einfließen. "
    "Siehe Anhang zwei. "
    "Außerdem wird das Unterwasserschweißen der Stahlrümpfe der Hafenfähren verlangt."
)
UNCOVERED = 3
"""The index of the welding aspect (after "Tram fleet maintenance." and "See annex two." are
merged into their neighbours)."""


def need_actors() -> list[dict[str, Any]]:
    needy = actor_data("needs-sensors", ["Our trams need better passenger information screens."])
    needy["documents"].append(
        {
            "id": "need",
            "kind": "description",
            "intent": "need",
            "text": "We need vibration sensors mounted on tram bogies that measure the wear of "
            "wheels and rails.",
        }
    )
    return [
        actor_data(
            "sensors",
            [
                "We build vibration sensors mounted on tram bogies and railway vehicles; they "
                "measure the wear of wheels and rails while the trams run."
            ],
            name="Bogie Sensing GmbH",
        ),
        actor_data(
            "ml-lab",
            [
                "Our machine learning models forecast component failures from measurements of "
                "machines weeks ahead, for predictive maintenance."
            ],
            kind="research",
            country="DE",
            name="Institute for Predictive Analytics",
        ),
        actor_data(
            "planning-software",
            [
                "We develop depot maintenance planning software with an open interface that "
                "takes in forecasts and schedules repairs."
            ],
            country="IT",
            name="Depot Planner Srl",
        ),
        needy,
        actor_data("bakery", ["Sourdough bread, pastry and cakes baked every morning."]),
        actor_data("tourism", ["Guided hiking tours in the Alps with mountain huts."]),
    ]
